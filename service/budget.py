"""The time budget of one request, and running its analysis where it can be abandoned.

An analysis runs in a worker thread (numpy and torch release the GIL, the event loop stays
free), and a thread cannot be killed. So the budget is kept two ways:

* the request stops *waiting* when the budget is spent (503 if its analysis never got a
  slot, 504 if it started), and the client gets its JSON answer at once;
* the thread itself asks :meth:`RequestBudget.check` between images and before every
  generator call, and stops there: an abandoned analysis costs at most the image it is on,
  whose work the configuration bounds (``semqa.analysis.AnalysisConfig``) and the image size
  limit bound.

At most ``max_concurrent_analyses`` analyses run at once; more wait for a slot within their
budget. CPU-bound analyses beyond the cores only slow each other down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from semqa.errors import SemqaError

T = TypeVar("T")


class BudgetExceeded(SemqaError):
    """The request's work ran past its time budget (HTTP 504)."""

    http_status = 504


class ServiceBusy(SemqaError):
    """The request waited its whole budget for a free analysis slot (HTTP 503)."""

    http_status = 503


class RequestBudget:
    """Deadline of one request, shared with the thread doing its work.

    Parameters
    ----------
    seconds : float
        Time from now the request may take in all (waiting included).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self._abandoned = threading.Event()

    def remaining(self) -> float:
        """Seconds left (≤ 0 when spent)."""
        return self.deadline - time.monotonic()

    def abandon(self) -> None:
        """Tell the worker thread that nobody waits for its result any more."""
        self._abandoned.set()

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` when the budget is spent or the work was abandoned."""
        if self._abandoned.is_set() or self.remaining() <= 0:
            raise BudgetExceeded(self.message())

    def progress(self, done: int, total: int) -> None:
        """A ``semqa.analysis`` progress callback that stops the analysis once the budget is spent."""
        self.check()

    def message(self) -> str:
        return f"the request exceeded its time budget of {self.seconds:g} s (SEMQA_SERVICE_REQUEST_BUDGET_S)"


async def run_in_budget(work: Callable[[], T], budget: RequestBudget, slots: anyio.CapacityLimiter) -> T:
    """Run ``work`` in a worker thread holding one of ``slots``, within ``budget``.

    Raises
    ------
    ServiceBusy
        No slot came free within the budget (the work never started).
    BudgetExceeded
        The work started but did not finish within the budget; its thread is abandoned and
        stops at its next :meth:`RequestBudget.check`.
    """
    try:
        slots.acquire_nowait()  # a free slot is taken even when the budget is nearly spent
    except anyio.WouldBlock:
        acquired = False
        with anyio.move_on_after(max(0.0, budget.remaining())):
            await slots.acquire()
            acquired = True
        if not acquired:
            raise ServiceBusy(
                f"the service is busy: no analysis slot came free within the request's time budget of {budget.seconds:g} s"
            ) from None
    try:
        with anyio.fail_after(max(0.0, budget.remaining())):
            return await anyio.to_thread.run_sync(_checked(work, budget), abandon_on_cancel=True)
    except TimeoutError:
        budget.abandon()
        raise BudgetExceeded(budget.message()) from None
    finally:
        slots.release()


def _checked(work: Callable[[], T], budget: RequestBudget) -> Callable[[], T]:
    def run() -> T:
        budget.check()  # the request may have been given up while the thread was starting
        return work()

    return run
