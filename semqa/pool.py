"""A process pool that maps a function over items in order, with a bounded number in flight.

Analysis of one image is pure Python and numpy/scipy work that holds the GIL for much of
its time, so threads do not scale it; processes do. Results come back in input order, so a
parallel analysis returns exactly what the serial one does. At most ``2 × workers`` items
are submitted ahead of the one awaited, which bounds memory on large lots when items are
paths that workers read themselves.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # for annotations: the pool's modules are imported only when a pool starts
    import multiprocessing.context
    from concurrent.futures import Future

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, n_items: int) -> int:
    """Processes to use: ``workers`` (``None`` = every available core), at most one per item."""
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    n = available_cores() if workers is None else int(workers)
    return max(1, min(n, n_items))


def _context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers inherit the parent's imported modules, so a pool starts in
    # milliseconds instead of re-importing scipy and scikit-image (about a second each). The
    # workers never call torch, whose thread pools are the one thing fork does not carry over
    # safely. Elsewhere (macOS, Windows) fork is unsafe or absent: spawn.
    import multiprocessing

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes, yielding results in input order.

    ``workers == 1`` runs in this process with no pool. ``fn`` and the items must pickle
    (module-level functions, :func:`functools.partial` of them). An exception raised by
    ``fn`` is re-raised here for the first item that failed, and pending items are cancelled.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    # Imported here: one image, or --workers 1, runs without a pool and need not load
    # multiprocessing (~10 ms of start-up).
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
