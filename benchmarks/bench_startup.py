"""Start-up of the CLI (issue 15): whole processes, and where an analysis's import time goes.

In one run, on one synthetic HR 768² TIFF (:mod:`semqa.synth.scenes`, 0.1 µm/px):

* **Whole processes**, each command run in a fresh interpreter, the commands (and the
  checkouts, with ``--against DIR``) alternating within each repeat: ``python -c pass``,
  ``semqa --help``, ``python -c "import semqa.analysis"`` and a one-image
  ``semqa analyze IMG --no-sr --json OUT`` recording on an embedded store of this run (whose
  first record, through MLflow's client, is made before the timed runs). Wall and CPU
  seconds (user + system of the process and its children, as ``/usr/bin/time`` counts them),
  medians, and each as a multiple of ``python -c pass``.
* **Import ladder**: in fresh interpreters, the CPU seconds each library adds when imported
  in the order an analysis loads them: numpy; the numpy submodules (``f2py``, ``testing``,
  ``ma``, ...) that scipy's vendored array-API layer loads when it clones numpy's namespace;
  ``scipy.ndimage`` (with ``scipy.special``; both rewrite the docstrings of their array-API
  functions at import); ``scipy.spatial`` (scikit-image's ``regionprops`` and the convex hull
  of :mod:`semqa.particles.measure`); ``scipy.cluster.hierarchy`` (its ``DisjointSet``);
  scikit-image's modules; tifffile; pydantic; then semqa's own modules (with the pydantic
  models they build). Medians over ``--repeats``.

``--against DIR`` times a second checkout (e.g. ``git worktree add /tmp/base main``) in the
same run, so a change is read as a ratio at one load. The host is shared: the load average is
printed, and CPU time is the fairer figure.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--repeats 7] [--against DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEMQA = "import sys; from semqa.cli import main; sys.exit(main())"

#: Rungs of the import ladder: what each imports on top of the ones before it.
LADDER: tuple[tuple[str, str], ...] = (
    ("numpy", "import numpy"),
    ("numpy submodules scipy's array-API layer loads",
     "import numpy.f2py, numpy.testing, numpy.ma, numpy.polynomial, numpy.random, numpy.typing"),
    ("scipy.ndimage + scipy.special", "import scipy.ndimage, scipy.special"),
    ("scipy.spatial (+ linalg, sparse)", "import scipy.spatial"),
    ("scipy.cluster.hierarchy", "import scipy.cluster.hierarchy"),
    ("scikit-image (measure, filters, morphology, segmentation)",
     ("from skimage.measure import regionprops, grid_points_in_poly; from skimage.filters import threshold_otsu; "
      "from skimage import morphology; from skimage.segmentation import _watershed_cy")),
    ("tifffile", "import tifffile"),
    ("pydantic", "import pydantic"),
    ("semqa.analysis (its modules and models)", "import semqa.analysis, semqa.io.images"),
)

_LADDER_CODE = r"""
import json, sys, time
out = []
for code in json.loads(sys.argv[1]):
    t = time.process_time()
    exec(code)
    out.append(time.process_time() - t)
print(json.dumps(out))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one whole process (its children included), and its stdout."""
    t, c = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - c
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}… failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed, cpu, proc.stdout


def tree_env(tree: Path, home: Path) -> dict[str, str]:
    """Environment running ``tree``'s semqa, recording into ``home``'s store (not the user's)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(tree), SEMQA_HOME=str(home))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's install has its bytecode cached: so do the runs here
    return env


def bench_processes(trees: dict[str, Path], image: Path, tmp: Path, repeats: int) -> None:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "semqa --help": [sys.executable, "-c", SEMQA, "--help"],
        "import semqa.analysis": [sys.executable, "-c", "import semqa.analysis"],
        "semqa analyze (1 image)": [sys.executable, "-c", SEMQA, "analyze", str(image), "--no-sr",
                                    "--json", str(tmp / "result.json")],
    }
    envs = {name: tree_env(tree, tmp / f"home-{i}") for i, (name, tree) in enumerate(trees.items())}
    for env in envs.values():  # the store's first record (MLflow's client) and the bytecode caches
        run(commands["semqa analyze (1 image)"], env)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(c, t): [] for c in commands for t in trees}
    loads = []
    for _ in range(repeats):
        for cname, cmd in commands.items():
            for tname in trees:
                times[(cname, tname)].append(run(cmd, envs[tname])[:2])
                loads.append(os.getloadavg()[0])
    print(f"whole processes, medians of {repeats} alternating runs (load average {min(loads):.1f}–{max(loads):.1f}):")
    for tname in trees:
        base_wall = statistics.median(w for w, _ in times[("python -c pass", tname)])
        base_cpu = statistics.median(c for _, c in times[("python -c pass", tname)])
        for cname in commands:
            w = statistics.median(x for x, _ in times[(cname, tname)])
            c = statistics.median(x for _, x in times[(cname, tname)])
            print(f"  {tname:<10} {cname:<24} wall {w:5.2f} s ({w / base_wall:4.1f}× pass)  CPU {c:5.2f} s ({c / base_cpu:4.1f}× pass)")
    if len(trees) == 2:
        a, b = trees
        for cname in commands:
            ratio = statistics.median(x for _, x in times[(cname, a)]) / statistics.median(x for _, x in times[(cname, b)])
            print(f"  CPU {a}/{b} {cname:<24} {ratio:5.2f}")


def bench_ladder(trees: dict[str, Path], tmp: Path, repeats: int) -> None:
    codes = json.dumps([code for _, code in LADDER])
    for i, (tname, tree) in enumerate(trees.items()):
        env = tree_env(tree, tmp / f"home-{i}")
        runs = [json.loads(run([sys.executable, "-c", _LADDER_CODE, codes], env)[2]) for _ in range(repeats)]
        print(f"import ladder ({tname}), CPU ms each rung adds, medians of {repeats} fresh interpreters:")
        total = 0.0
        for k, (label, _) in enumerate(LADDER):
            ms = 1000 * statistics.median(r[k] for r in runs)
            total += ms
            print(f"  {label:<58} {ms:6.0f}   (cumulative {total:5.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--against", type=Path, help="a second checkout to time in the same run (its root folder)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    trees = {"this": HERE.parent}
    if args.against is not None:
        if not (args.against / "semqa" / "__init__.py").is_file():
            parser.error(f"--against {args.against}: no semqa package there")
        trees["against"] = args.against.resolve()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; trees: "
          + ", ".join(f"{k} = {v}" for k, v in trees.items()))
    with tempfile.TemporaryDirectory(prefix="semqa-startup-") as tmp_name:
        tmp = Path(tmp_name)
        from semqa.io.images import write_image
        from semqa.synth.scenes import SynthConfig, render_pair

        config = SynthConfig(size_px=768)
        hr, _, _ = render_pair(config, np.random.default_rng(15))
        image = write_image(tmp / "hr.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16)
        bench_processes(trees, image, tmp, args.repeats)
        bench_ladder(trees, tmp, args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
