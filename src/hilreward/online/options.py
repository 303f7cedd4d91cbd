"""The retrainer's options (``retrain.*`` of ``hilreward serve``), validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import check_values
from ..errors import ConfigError
from .adapt import Scope
from .gate import EpisodeError


@dataclass
class RetrainOptions:
    """How the retrainer turns corrections into versions (``hilreward serve retrain.<key>=...``)."""

    every: int = 1
    """Retrain after every N new corrections (a review always retrains)."""
    min_interval_s: float = 0.5
    """At least this many seconds between two retraining runs (corrections arriving meanwhile are batched)."""
    quiet_s: float = 0.3
    """Start a run once no correction or review arrived for this long (at most 4x this), so a burst trains as one."""
    steps: int = 300
    """Most optimizer steps per run (the head, and the last stage when it adapts, start from the served checkpoint's
    every run)."""
    min_steps: int = 100
    """Fewest optimizer steps per run: the first steps, pulled hard by the corrections, leave the offline data's fit
    disturbed (measured on window-open under a new layout and lighting: stopping at 25 steps gave 2 gross early
    terminations and 4 false successes on 30 test episodes, 100 steps none; docs/benchmarks.md)."""
    check_every: int = 25
    """Check the corrections every N steps and stop training once ``min_fixed`` of them are fixed (after
    ``min_steps``)."""
    batch_size: int = 64
    """Feature rows per step."""
    lr: float = 1e-3
    """AdamW learning rate of the head."""
    correction_weight: float = 20.0
    """Sampling weight of a correction relative to an offline frame of its class (after class balancing)."""
    contradicted_weight: float = 1.0
    """Sampling weight of a contradicted correction (until a review accepts it), like ``correction_weight``."""
    contradiction_radius: float = 0.5
    """A correction is contradicted when a frame with another label (offline or another correction) is closer
    than this many times the median distance between consecutive offline frames (encoder features). 0: never."""
    scope: Scope = "auto"
    """What retrains: ``head`` (the head only, on the encoder's cached features), ``last`` (the encoder's last stage
    too, on the cached outputs of the stages before it), ``auto`` (the head, and the last stage too when the head
    alone leaves gated corrections unfixed: new states the encoder cannot tell apart)."""
    veto: list[EpisodeError] = field(default_factory=lambda: ["gross_early", "false_success", "missed"])
    """Gate: the episode errors (``gross_early``, ``false_success``, ``missed``, ``late``) a candidate may not bring
    to an offline held-out episode the serving version gets right (jitter within tolerance_s never counts)."""
    min_fixed: float = 0.9
    """Training stops once this fraction of the gated corrections (not rejected, contradicted, boundary or
    conflicting) is classified as labelled; with ``scope=auto`` fewer makes the last stage adapt too. The gate
    itself asks that a version fix more gated corrections than it breaks."""
    max_reruns: int = 3
    """Gate: reruns of an attempt without the corrections blamed for an offline regression (then it gives up,
    naming them)."""
    blame_per_regression: int = 2
    """Gate: corrections blamed per offline regression on the first rerun (doubling on each further one)."""
    boundary_frames: int = 2
    """A correction within this many steps of a label change of its episode (served labels overlaid with the
    human's) is a boundary frame: a keypress lands late, so it trains lightly and never gates (0: none)."""
    boundary_weight: float = 5.0
    """Sampling weight of a boundary frame, like ``correction_weight``."""
    holdout_episodes: int = 2
    """Gate: hold out the corrections of this many recent episodes the serving version learned from, and compare
    training without them with and without the new corrections (0: no such check)."""
    holdout_steps: int = 50
    """Gate: both heads of that comparison train exactly this many steps (no early stop: like with like)."""
    holdout_tolerance: float = 0.1
    """Gate: the held-out corrections' accuracy may drop by at most this much (absolute, and always by one
    correction) with the new corrections."""
    live_episodes: int = 20
    """Gate: judge each candidate on the newest this many live episodes the server recorded (``<state_dir>/live``,
    ``live.keep`` of them on disk): the states the policy visits, which no offline episode shows (0: no live gate)."""
    live_share: float = 0.1
    """Gate: a candidate may newly fire (earlier than the serving version, or where it never fired) in at most this
    share of those episodes (at least one) where no correction labels success by then. A policy exploits a false
    success within minutes: an unconfirmed firing in one episode is what fixing one missed success looks like, in
    many at once what a reward that learned a shortcut looks like (drawer-open: one 3-frame flag made a version fire
    at step 1-2 of every episode). Past it, the success-labelled corrections most alike the frames it newly fires on
    become ``conflicts_live`` and it runs again without them."""
    live_early_steps: int = 2
    """Gate: a firing at or before this step of a live episode is early (RL episodes start away from the goal)."""
    live_early_share: float = 0.05
    """Gate: a candidate that fires early in more than this share of the live episodes, and in more than the
    serving version does, is never published, whatever the corrections say."""
    live_tolerance: int = 2
    """Gate: steps of jitter between two firings that do not count as firing earlier or later."""
    ensemble: int = 4
    """Heads in the uncertainty ensemble, trained while the retrainer is idle (0: no uncertainty)."""
    ensemble_steps: int = 100
    """Optimizer steps of each ensemble head trained from scratch (version 0's)."""
    keep_versions: int = 16
    """Published versions kept on disk: the newest N (0: all). Version 0 (the checkpoint), the serving one and every
    one an episode still uses (``pins.idle_s``) are never removed."""
    threads: int = 1
    """torch threads of the retrainer process (leave the other cores to Predict)."""
    seed: int = 0
    """Seed of the head's batch sampling."""


    def check(self) -> None:
        """ConfigError naming the option and its range when a value is out of it."""
        if self.every < 1 or self.min_interval_s < 0 or self.quiet_s < 0 or not 0 <= self.min_fixed <= 1 \
                or min(self.steps, self.check_every, self.holdout_steps) < 1 or not 0 <= self.min_steps <= self.steps:
            raise ConfigError("retrain.every, retrain.steps, retrain.check_every and retrain.holdout_steps must be >= 1, "
                              "retrain.min_interval_s and retrain.quiet_s >= 0, retrain.min_fixed within [0, 1], "
                              "retrain.min_steps within [0, retrain.steps]")
        if min(self.contradicted_weight, self.contradiction_radius, self.holdout_episodes, self.holdout_tolerance,
               self.ensemble, self.max_reruns, self.boundary_frames, self.boundary_weight, self.keep_versions,
               self.live_episodes, self.live_early_steps, self.live_tolerance) < 0 \
                or not (0 <= self.live_share <= 1 and 0 <= self.live_early_share <= 1) \
                or min(self.ensemble_steps, self.blame_per_regression) < 1:
            raise ConfigError("retrain.contradicted_weight, contradiction_radius, holdout_episodes, holdout_tolerance, "
                              "ensemble, max_reruns, boundary_frames, boundary_weight, keep_versions, live_episodes, "
                              "live_early_steps and live_tolerance must be >= 0, live_share and live_early_share "
                              "within [0, 1], "
                              "retrain.ensemble_steps and blame_per_regression >= 1")
        check_values(self, "retrain.")
