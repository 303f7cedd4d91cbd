"""The processes of one training run: one (``hilreward train``) or several (``accelerate launch -m hilreward train``).

Started by ``accelerate launch`` (or ``torchrun``, ``mpirun``) as more than one process, a run trains
data-parallel through Hugging Face Accelerate: DDP over gloo on CPUs, NCCL on GPUs. Accelerate is
imported only then; one process runs exactly as it always did. Every process holds the whole model
and takes its share of each step's batch; DDP averages the gradients, so each step is the same
update as one process computing the whole batch.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from ..errors import ConfigError

# How launchers tell a process the number of processes (as Accelerate reads them: torchrun, MPI flavours).
WORLD_SIZE_KEYS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher started (1 when run directly)."""
    return max(int(os.environ.get(k) or 1) for k in WORLD_SIZE_KEYS)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device=cuda but no CUDA device is available; use training.device=cpu")
    return torch.device(name)


def process_seed(seed: int, process: int, step: int = 0) -> int:
    """Seed of process ``process``'s own random stream (dropout) from ``step`` on."""
    return (int(seed) * 1_000_003 + int(step)) * 1_009 + int(process)


class Processes:
    """This run's processes and the few collective operations training needs.

    ``index`` / ``count``: this process and how many there are; ``device``: this process's device.
    With one process every operation is local and Accelerate is never imported.
    """

    def __init__(self, device: torch.device = torch.device("cpu"), accelerator: Any = None):
        self.device = device
        self.accelerator = accelerator
        self.index = accelerator.process_index if accelerator is not None else 0
        self.count = accelerator.num_processes if accelerator is not None else 1
        self.is_main = self.index == 0
        self.is_local_main = accelerator.is_local_main_process if accelerator is not None else True

    @classmethod
    def start(cls, device: str = "auto") -> "Processes":
        """One process, or join the processes the launcher started (``training.device`` picks cpu or cuda)."""
        if launched_processes() <= 1:
            if "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ:
                print("warning: `accelerate launch` was asked for several processes but started one; on a machine "
                      "without GPUs add --multi_gpu (see README, Scaling out)", flush=True)
            return cls(resolve_device(device))
        resolve_device(device)  # the same error for training.device=cuda without CUDA
        from accelerate import Accelerator

        # cpu=True makes Accelerate use gloo: needed on machines without CUDA, which it would otherwise
        # treat as one process each (and `accelerate launch --multi_gpu` does not pass --cpu on).
        accelerator = Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())
        found = accelerator.device
        return cls(torch.device("cpu") if found.type == "cpu" else found, accelerator)

    def print(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)

    def share(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (shares differ in length by at most one)."""
        return slice(self.index * n // self.count, (self.index + 1) * n // self.count)

    def gather(self, value: Any) -> list:
        """Every process's ``value`` (picklable), in process order, on every process."""
        if self.accelerator is None:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes."""
        parts = self.gather(values)
        return {k: sum(p[k] for p in parts) / len(parts) for k in values}

    def wait(self) -> None:
        """Block until every process got here."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def local_main_first(self):
        """Run the block on each machine's main process first (it fills the machine's cache), then on the others."""
        if self.accelerator is None:
            return contextlib.nullcontext()
        return self.accelerator.local_main_process_first()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` wrapped so backward averages its gradients across processes (DDP); itself for one process."""
        if self.accelerator is None:
            return module
        return self.accelerator.prepare_model(module)


def is_main_process() -> bool:
    """True unless this is a non-main process of a data-parallel run."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0


def finish() -> None:
    """Leave the process group (at the end of ``hilreward train``), so every process exits cleanly."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
