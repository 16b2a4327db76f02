"""Replaying a run step by step (the step slider and the play button), from the steps it produced:
nothing is decoded again."""

from __future__ import annotations

import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

from ..pipeline import DecodeStep
from .errors import PlaygroundError
from .page import Update
from .pictures import step_frame

REPLAY_RUNS = 32  # runs kept for the step slider (each holds its steps' token grids and small pictures)
PLAY_SPEEDS = (0.2, 3.0)  # seconds per step the play button can be set to


@dataclass
class Run:
    """A run's steps as they arrive (the step slider replays them: nothing is decoded again)."""

    key: str
    planned: int  # steps of every stage, known from the first one
    steps: list[DecodeStep] = field(default_factory=list)
    finished: bool = False


class Replays:
    """The steps of the last `size` runs, by a random key (unguessable: one user cannot replay another's)."""

    def __init__(self, size: int = REPLAY_RUNS) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self.size = size

    def start(self, planned: int) -> Run:
        run = Run(secrets.token_urlsafe(12), planned)
        with self._lock:
            self._runs[run.key] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)
        return run

    def get(self, key: Any) -> Optional[Run]:
        with self._lock:
            return self._runs.get(key) if isinstance(key, str) else None


REPLAYS = Replays()


def _run(key: Any) -> Run:
    run = REPLAYS.get(key)
    if run is None or not run.steps:
        raise PlaygroundError(f"There is no run to replay: generate an image first (the step slider replays the "
                              f"last {REPLAY_RUNS} runs).", title="Nothing to replay")
    return run


def _step_number(value: Any, run: Run) -> int:
    """A step of `run`, 1 to its planned number, as a slider or an API client sends it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and 1 <= number <= run.planned):
        raise PlaygroundError(f"step must be a whole number from 1 to {run.planned}, got {value!r}.")
    return int(number)


def replay(key: Any, step: Any) -> Update:
    """Step `step` (1-based across the stages) of a run, from the steps it already produced; a step not
    decoded yet shows the latest one."""
    run = _run(key)
    k = _step_number(step, run) if step is not None else len(run.steps)
    return step_frame(run.steps[min(k, len(run.steps)) - 1], k if k <= len(run.steps) else len(run.steps),
                      run.planned)


def play_next(key: Any, step: Any) -> tuple[Update, bool]:
    """The step after `step` for the play button, and whether to keep playing (not past the last step of
    a finished run; at the end, play starts again from step 1)."""
    run = _run(key)
    try:
        k = int(float(step))
    except (TypeError, ValueError):
        k = 0
    k = 1 if k >= len(run.steps) and run.finished else min(k + 1, len(run.steps))
    return step_frame(run.steps[k - 1], k, run.planned), not (run.finished and k >= len(run.steps))


def check_speed(value: Any) -> float:
    """Seconds per step of the play button, within PLAY_SPEEDS."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PlaygroundError(f"The play speed must be a number of seconds per step, got {value!r}.") from None
    lo, hi = PLAY_SPEEDS
    if not lo <= seconds <= hi:
        raise PlaygroundError(f"The play speed must be between {lo} and {hi} seconds per step, got {seconds}.")
    return seconds
