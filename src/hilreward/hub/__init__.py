"""hilreward on the Hugging Face Hub: ``hilreward push`` (:func:`push`) uploads a checkpoint with a model card
(:mod:`.card`). Loading back needs nothing here: every checkpoint path also takes ``user/name[@revision]``
(:func:`hilreward.models.checkpoint.resolve_checkpoint`)."""

from .card import model_card
from .push import PushOptions, Pushed, push

__all__ = ["push", "PushOptions", "Pushed", "model_card"]
