"""Speed of pair-set validation: 200 synthetic pairs of 768² HR, target under 30 s.

Times :func:`validation.validate_pairs` (rows, GX checkpoint, Data Docs, report files) on
the configured number of worker threads against one thread (the baseline) on the same
data, and prints seconds in all, ms per pair, and how much of it GX took.

    .venv/bin/python benchmarks/bench_validation.py [--pairs 200] [--size 768] [--data DIR] [--workers 2] [--code DIR]

``--code DIR`` also times the same pair set, in the same run, with the ``validation`` package of
another checkout (e.g. ``git worktree add DIR main`` for the code before a change), in a child
process, and prints the ratio of the two.

``--data DIR`` reuses (or, if missing, makes and keeps) the pair set there; otherwise it
is made in a temporary folder first (about 0.5 s per 768² pair, not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

TARGET_S = 30.0


def _time(pair_dir: Path, workers: int, report_dir: Path) -> tuple[float, float, bool]:
    """(seconds for validate_pairs, seconds of its GX part re-run on its table, success)."""
    import pandas as pd

    from validation import ValidationConfig, validate_pairs
    from validation.run import run_suite
    from validation.suites import pair_suite

    config = ValidationConfig(workers=workers)
    t0 = time.perf_counter()
    report = validate_pairs(pair_dir, config=config, report_dir=report_dir)
    total = time.perf_counter() - t0
    table = pd.read_csv(report.rows_csv)
    t0 = time.perf_counter()
    run_suite(table, pair_suite(config, report.bit_depth), "pair", report_dir / "gx_only")
    return total, time.perf_counter() - t0, report.success


def _time_other_checkout(code: Path, pair_dir: Path, workers: int, report_dir: Path) -> float:
    """Seconds of :func:`_time` in a child process importing ``validation`` and ``semqa`` from ``code``."""
    env = dict(os.environ, PYTHONPATH=str(code.resolve()))
    args = [sys.executable, __file__, "--time-only", str(pair_dir), "--workers", str(workers), "--report", str(report_dir)]
    out = subprocess.run(args, env=env, cwd=code, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["total_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=768, help="HR side in pixels")
    parser.add_argument("--data", type=Path, help="pair set to reuse or create")
    parser.add_argument("--workers", type=int, default=2, help="threads for the timed run (baseline: 1)")
    parser.add_argument("--code", type=Path, help="another checkout whose validation is timed on the same pairs")
    parser.add_argument("--time-only", type=Path, help=argparse.SUPPRESS)  # child of --code: one timing as JSON
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_only:
        import validation.run  # the GX import outside the timing, as below

        total, _, ok = _time(args.time_only, args.workers, args.report)
        print(json.dumps({"total_s": total, "success": ok}))
        return

    from semqa.synth.scenes import SynthConfig, make_pairs

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "pairs"
        if not (data / "hr").is_dir():
            t0 = time.perf_counter()
            make_pairs(data, args.pairs, SynthConfig(size_px=args.size), seed=0, workers=max(args.workers, 1))
            print(f"made {args.pairs} pairs of {args.size}² HR in {time.perf_counter() - t0:.1f} s (not timed)")
        n = len(list((data / "hr").iterdir()))
        import validation.run  # noqa: F401  (GX import, ~4 s once per process, not per call)

        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work slows every figure)")
        runs = {}
        for workers in (1, args.workers):
            total, gx_s, ok = _time(data, workers, Path(tmp) / f"report_{workers}")
            runs[workers] = total
            print(
                f"workers={workers}: validate_pairs {total:.2f} s for {n} pairs ({1000 * total / n:.1f} ms/pair), "
                f"of which GX checkpoint + Data Docs ≈ {gx_s:.2f} s; all passed: {ok}"
            )
        speedup = runs[1] / runs[args.workers]
        verdict = "meets" if runs[args.workers] < TARGET_S else "MISSES"
        print(f"speed-up over 1 worker: {speedup:.2f}×; {runs[args.workers]:.2f} s {verdict} the {TARGET_S:.0f} s target")
        if args.code:
            other = _time_other_checkout(args.code, data, args.workers, Path(tmp) / "report_other")
            print(
                f"validation of {args.code} on the same pairs, workers={args.workers}: {other:.2f} s; "
                f"this checkout takes {runs[args.workers] / other:.2f}× its time"
            )


if __name__ == "__main__":
    main()
