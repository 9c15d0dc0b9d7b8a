"""Time left of a training whose phases cost differently per step (issue 15).

The generator trains in two phases: PSNR pre-training (the generator alone) and adversarial
fine-tuning (generator, discriminator and the feature losses: several times the work per
step). A bar that extrapolates one rate over all steps is wrong by that factor once the GAN
phase starts, and before. :class:`PhaseEta` estimates each phase from its own steps only: the
median duration of its last ``window`` steps (the median, so an occasional slow step — a
checkpoint, a page fault — does not swing it) times the steps left in it. A phase that has not
started yet has no rate, and the estimate says so (``?``) rather than borrow another phase's.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

#: Recent steps per phase whose median gives its seconds per step.
DEFAULT_WINDOW = 50


def format_seconds(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PhaseEta:
    """Per-phase time-left estimate from the durations of the steps run so far.

    Parameters
    ----------
    phases : sequence of (name, end step)
        Consecutive phases; phase ``i`` holds global steps ``[end_{i-1}, end_i)`` (the first
        starts at 0). Phases with no steps are dropped.
    window : int
        Recent steps of a phase whose median duration is its rate.
    """

    def __init__(self, phases: Sequence[tuple[str, int]], window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.phases: list[tuple[str, int, int]] = []
        start = 0
        for name, end in phases:
            if end > start:
                self.phases.append((name, start, int(end)))
                start = int(end)
        self._recent = {name: deque(maxlen=window) for name, _, _ in self.phases}

    def phase_of(self, step: int) -> str:
        """Name of the phase global step ``step`` (0-based) belongs to (the last for any later step)."""
        for name, _, end in self.phases:
            if step < end:
                return name
        return self.phases[-1][0]

    def add(self, step: int, seconds: float) -> None:
        """Record that global step ``step`` (0-based) took ``seconds``."""
        self._recent[self.phase_of(step)].append(float(seconds))

    def seconds_per_step(self, name: str) -> float | None:
        """Median of the phase's recent step durations; None before it has run a step."""
        recent = self._recent[name]
        return statistics.median(recent) if recent else None

    def remaining(self, done: int, stop: int) -> dict[str, float | None]:
        """Seconds left per phase with steps left in ``[done, stop)``: None where the phase has no rate yet."""
        out: dict[str, float | None] = {}
        for name, start, end in self.phases:
            left = max(0, min(end, stop) - max(start, done))
            if left:
                rate = self.seconds_per_step(name)
                out[name] = None if rate is None else left * rate
        return out

    def describe(self, done: int, stop: int) -> str:
        """The estimate as the bar shows it: ``1:23`` in all, or ``pretrain 0:40 + gan ?`` while a phase has no rate."""
        left = self.remaining(done, stop)
        if not left:
            return "0:00"
        if all(v is not None for v in left.values()):
            return format_seconds(sum(left.values()))  # type: ignore[arg-type]
        return " + ".join(f"{name} {'?' if v is None else format_seconds(v)}" for name, v in left.items())
