"""The debounce, the one rule every path counts by: success only once the success probability stayed at or above
the threshold for ``consecutive`` steps in a row. The reward function and the server (``deploy.rule.judge``, step by
step) and evaluation and the gate (``evaluation.episodes.first_firing``, over an episode) count with :func:`streaks`.

Below ``deploy`` and ``evaluation`` both, and light (numpy only): LeRobot's own venv imports the reward rule.
"""

from __future__ import annotations

import numpy as np


def streaks(above, streak: int = 0) -> np.ndarray:
    """At each step, how many steps in a row up to it were ``above`` the threshold, continuing a ``streak`` of the
    steps before the first. A step is a success when its streak reaches ``consecutive``."""
    above = np.asarray(above, dtype=bool).reshape(-1)
    pos = np.arange(above.size)
    last_below = np.maximum.accumulate(np.where(above, -1, pos))
    return np.where(last_below < 0, pos + 1 + int(streak), pos - last_below)
