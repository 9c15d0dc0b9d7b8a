"""CPU per stage of the classic detection and measurement (issue 15), two checkouts in one run.

Frames are rendered once, by this checkout's :mod:`semqa.synth`, and analysed by each checkout
in fresh processes, the checkouts alternating per round, so a speed change is read at one load
on the same pixels:

* ``scenes``: HR 768² frames of :mod:`semqa.synth.scenes` (``bench_performance.py``'s lot);
* ``families``: :mod:`semqa.synth.families` dome, bse and dark frames (768², D50 20 px, 200 e⁻/px);
* ``agglomerates``: :mod:`semqa.synth.agglomerates` clusters (768², D50 12 px).

Each stage function of :func:`semqa.particles.segmentation.detect` is timed where ``detect``
calls it (CPU seconds of the process, outermost call only: the distance-map split that the
contact cuts run on their seeds counts to the contact cuts), and the measurement
(:func:`semqa.particles.measure.measure_particles`). The first frame of each process is analysed
once untimed, so per-shape caches are warm as in a lot. ``--profile`` prints cProfile's top
functions by own time for this checkout instead.

Run: ``.venv/bin/python benchmarks/bench_stages.py [--frames 3] [--rounds 3] [--against DIR] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: Stage name → the functions ``detect`` calls for it (names in semqa.particles.segmentation).
STAGES: dict[str, tuple[str, ...]] = {
    "noise fit": ("fit_noise_model", "stabilize"),
    "significance": ("dog_responses", "significance_from", "null_sum_inflation"),
    "look (Otsu, background)": ("otsu_mask", "_background"),
    "local thresholds": ("_local_threshold_mask",),
    "substrate holes": ("open_substrate_holes",),
    "distance-map split": ("_split",),
    "contact cuts": ("_split_contacts",),
}


def render_frames(sets: list[str], n: int, size: int) -> dict[str, np.ndarray]:
    """``{set/i: frame}`` from fixed seeds."""
    from semqa.synth.agglomerates import AgglomerateConfig, render_agglomerates, scan_agglomerates
    from semqa.synth.families import FamilyConfig, render_family, scan_family
    from semqa.synth.scenes import SynthConfig, render_pair

    frames = {}
    for i in range(n):
        if "scenes" in sets:
            frames[f"scenes/{i}"] = render_pair(SynthConfig(size_px=size), np.random.default_rng(100 + i))[0]
        if "families" in sets:
            family = ("dome", "bse", "dark")[i % 3]
            config = FamilyConfig(family=family, size_px=size, d50_px=20, dose=200.0)
            rng = np.random.default_rng(200 + i)
            frames[f"families/{i}"] = scan_family(render_family(config, rng), config, rng)[0]
        if "agglomerates" in sets:
            config = AgglomerateConfig(size_px=size, d50_px=12)
            rng = np.random.default_rng(300 + i)
            frames[f"agglomerates/{i}"] = scan_agglomerates(render_agglomerates(config, rng), config, rng)
    return {k: np.asarray(v, dtype=np.float32) for k, v in frames.items()}


def _instrument(times: dict[str, float]) -> None:
    """Wrap the stage functions in segmentation's namespace with outermost-call CPU timers."""
    from semqa.particles import segmentation

    active = [0]
    for stage, names in STAGES.items():
        for name in names:
            fn = getattr(segmentation, name)

            def timed(*args, _fn=fn, _stage=stage, **kwargs):
                if active[0]:
                    return _fn(*args, **kwargs)
                active[0] += 1
                t = time.process_time()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    times[_stage] = times.get(_stage, 0.0) + time.process_time() - t
                    active[0] -= 1

            setattr(segmentation, name, timed)


def worker(npz: Path) -> None:
    """Per frame: CPU of each stage, of detect, of the measurement (JSON on the last line)."""
    from semqa.particles.measure import measure_particles
    from semqa.particles.segmentation import detect

    with np.load(npz) as data:
        frames = {k: data[k] for k in data.files}
    measure_particles(detect(next(iter(frames.values()))).labels, 0.1)  # warm the per-shape caches
    times: dict[str, float] = {}
    _instrument(times)
    out = {}
    for name, frame in frames.items():
        times.clear()
        t = time.process_time()
        labels = detect(frame).labels
        times["detect (all)"] = time.process_time() - t
        t = time.process_time()
        particles, _ = measure_particles(labels, 0.1)
        times["measurement"] = time.process_time() - t
        times["particles"] = float(len(particles))
        out[name] = dict(times)
    print(json.dumps(out))


def profile(npz: Path, top: int) -> None:
    import cProfile
    import pstats

    from semqa.particles.measure import measure_particles
    from semqa.particles.segmentation import detect

    with np.load(npz) as data:
        frames = [data[k] for k in data.files]
    measure_particles(detect(frames[0]).labels, 0.1)
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for frame in frames:
        measure_particles(detect(frame).labels, 0.1)
    prof.disable()
    print(f"cProfile over {len(frames)} frames (CPU s), top {top} by own time:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3, help="frames per set (default 3)")
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--sets", nargs="+", default=["scenes", "families", "agglomerates"],
                        choices=["scenes", "families", "agglomerates"])
    parser.add_argument("--rounds", type=int, default=3, help="processes per checkout, alternating (default 3)")
    parser.add_argument("--against", type=Path, help="a second checkout to time in the same run")
    parser.add_argument("--profile", type=int, nargs="?", const=30, metavar="TOP",
                        help="print cProfile's top functions for this checkout instead")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    with tempfile.TemporaryDirectory(prefix="semqa-stages-") as tmp:
        npz = Path(tmp) / "frames.npz"
        np.savez(npz, **render_frames(args.sets, args.frames, args.size))
        if args.profile:
            profile(npz, args.profile)
            return
        trees = {"this": HERE.parent, **({"against": args.against.resolve()} if args.against else {})}
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
              f"{args.frames} frames per set {args.sets}, {args.size}², {args.rounds} rounds; "
              + ", ".join(f"{k} = {v}" for k, v in trees.items()))
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
                # This script, on the checkout's semqa: the instrumentation is the same for both.
                proc = subprocess.run([sys.executable, __file__, "--worker", str(npz)], capture_output=True, text=True,
                                      env=env, timeout=1800, check=True)
                runs[name].append(json.loads(proc.stdout.splitlines()[-1]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    stages = [*STAGES, "detect (all)", "measurement"]
    for group in args.sets:
        print(f"\n{group}: CPU s per frame (median over frames × rounds)")
        header = f"  {'stage':<26}" + "".join(f"{n:>10}" for n in trees) + ("     ratio" if len(trees) == 2 else "")
        print(header)
        for stage in [*stages, "particles"]:
            med = {}
            for name in trees:
                vals = [frame.get(stage, 0.0) for run in runs[name] for key, frame in run.items() if key.startswith(group + "/")]
                med[name] = statistics.median(vals)
            line = f"  {stage:<26}" + "".join(f"{med[n]:10.3f}" for n in trees)
            if len(trees) == 2 and stage != "particles" and med["against"] > 0:
                line += f"{med['this'] / med['against']:10.2f}"
            print(line)


if __name__ == "__main__":
    main()
