"""`semqa demo`'s phases, this tree against a baseline tree, in one run (issue 15).

Each run is a fresh process with its own output folder and ``SEMQA_HOME`` (so the MLflow store
and the gates' evaluation set are made afresh, as in a fresh clone). At every ``[n/N]`` step line
the demo prints, the run records the wall clock and the CPU seconds of the process and of its
reaped children (``os.times``: the synthesis and analysis pools are joined, hence counted), so
each phase gets both. CPU seconds are the figure to compare on a shared host; wall is printed
with the load average around each run. Runs alternate baseline / this tree, ``--rounds`` times,
and the per-phase medians are compared as ratios (this tree / baseline).

Make a baseline tree from a commit without touching the repository's worktrees::

    mkdir /tmp/demo-base && git archive e297532 | tar -x -C /tmp/demo-base
    .venv/bin/python benchmarks/bench_demo.py --baseline /tmp/demo-base [--rounds 1] [-- DEMO ARGS]

Arguments after ``--`` go to both demos' ``run_demo`` as ``key=value`` (e.g. ``images_per_lot=4``);
the baseline gets only those its ``run_demo`` accepts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

#: Runs ``run_demo`` in the child, recording (step, wall, CPU self + children) at each step line.
_CHILD = r"""
import builtins, inspect, json, os, re, sys, time
marks = [(0, time.monotonic(), sum(os.times()[:4]))]
_print = builtins.print
def _marking_print(*args, **kwargs):
    m = re.match(r"\s*\[(\d+)/\d+\]", " ".join(map(str, args)))
    if m:
        marks.append((int(m.group(1)), time.monotonic(), sum(os.times()[:4])))
    _print(*args, **kwargs)
builtins.print = _marking_print
from semqa.demo import run_demo
kwargs = json.loads(sys.argv[2])
accepted = inspect.signature(run_demo).parameters
run_demo(sys.argv[1], **{k: v for k, v in kwargs.items() if k in accepted})
marks.append((99, time.monotonic(), sum(os.times()[:4])))
open(sys.argv[3], "w").write(json.dumps(marks))
"""

#: What each step of the demo does (README, "What `semqa demo` does").
PHASES = {0: "imports", 1: "synthesis", 2: "validation", 3: "training", 4: "promotion",
          5: "RLD lot-1 analyses", 6: "comparisons", 7: "report and lineage"}


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_once(tree: Path, demo_kwargs: dict, log: Path) -> dict[str, tuple[float, float]]:
    """One demo of ``tree``: ``{phase: (wall s, CPU s)}`` plus ``"total"``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(tree), "SEMQA_HOME": str(Path(tmp) / "home")}
        env.pop("MLFLOW_TRACKING_URI", None)
        load0 = os.getloadavg()[0]
        marks_file = Path(tmp) / "marks.json"
        with log.open("w") as fh:
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(Path(tmp) / "out"), json.dumps(demo_kwargs), str(marks_file)],
                                  cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
        load1 = os.getloadavg()[0]
        if proc.returncode != 0 or not marks_file.is_file():
            sys.exit(f"demo of {tree} failed (exit {proc.returncode}); see {log}")
        marks = json.loads(marks_file.read_text())
    phases = {PHASES.get(a[0], str(a[0])): (b[1] - a[1], b[2] - a[2]) for a, b in zip(marks, marks[1:])}
    phases["total"] = (marks[-1][1] - marks[0][1], marks[-1][2] - marks[0][2])
    print(f"  {tree}: {phases['total'][0]:.0f} s wall, {phases['total'][1]:.0f} s CPU; load average "
          f"{load0:.1f} → {load1:.1f}; log {log}", flush=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="tree of the baseline commit")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1], help="tree to time (default: this one)")
    parser.add_argument("--rounds", type=int, default=1, help="baseline/this-tree pairs, alternating")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "bench_demo", help="folder for the demos' output")
    parser.add_argument("demo_args", nargs="*", help="key=value options for run_demo (after --)")
    args = parser.parse_args()
    demo_kwargs = {k: _value(v) for k, v in (a.split("=", 1) for a in args.demo_args)}
    args.logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"baseline": [], "tree": []}
    for r in range(args.rounds):
        for which, tree in (("baseline", args.baseline), ("tree", args.tree)):
            print(f"round {r + 1}, {which}", flush=True)
            runs[which].append(run_once(tree.resolve(), demo_kwargs, args.logs / f"{which}-{r + 1}.log"))
    names = [*dict.fromkeys([*runs["baseline"][0], *runs["tree"][0]])]
    names.append(names.pop(names.index("total")))
    print(f"\nmedians over {args.rounds} round(s); ratio = this tree / baseline")
    print(f"{'phase':<22} {'base wall':>9} {'base CPU':>9} {'new wall':>9} {'new CPU':>9} {'CPU ratio':>9}")
    for name in names:
        def med(which: str, i: int) -> float:
            vals = [run[name][i] for run in runs[which] if name in run]
            return median(vals) if vals else float("nan")
        bw, bc, nw, nc = med("baseline", 0), med("baseline", 1), med("tree", 0), med("tree", 1)
        print(f"{name:<22} {bw:9.1f} {bc:9.1f} {nw:9.1f} {nc:9.1f} {nc / bc if bc else float('nan'):9.2f}")


if __name__ == "__main__":
    main()
