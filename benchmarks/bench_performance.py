"""Performance benchmark (issue 15): analysis against ImageJ, SR against GEMM, CLI start-up, demo.

In one run, on synthetic HR scenes (:mod:`semqa.synth.scenes`, 0.1 µm/px, D50 = 3 µm):

* **Analysis**, whole processes (interpreter or JVM start included), per image (one file) and
  per lot (``--images`` files): ``semqa analyze --no-sr`` with every core and with
  ``--workers 1`` against ImageJ's batch macro (``benchmarks/imagej_psd.ijm``: Gaussian, Otsu,
  fill holes, watershed, Analyze Particles; run under ``xvfb-run`` because ImageJ 1.x builds its
  menus even in batch mode) when Debian's ``imagej`` is installed, else the plain scikit-image
  pipeline (``benchmarks/skimage_baseline_psd.py``). Runs alternate, medians over ``--repeats``,
  and semqa's wall time as a ratio of the baseline's. Each method's D50 is printed beside the
  true D50 of the whole particles, so speed is not read without accuracy.
* **SR inference**: GFLOP/s of :meth:`semqa.sr.inference.Upscaler.upscale_batch` (default
  compact generator, 4 LR images of 192², each one window) with the device plan
  (channels-last) and with plain contiguous float32, against a float32 2048² matrix product in
  the same process, alternating; the issue's target is ≥ 50 % of GEMM.
* **CLI start-up**: ``semqa --help`` and a one-image ``analyze`` against ``python -c pass``.
* **One-image analyze, where its CPU goes**: in a fresh process, stage by stage (importing the
  analysis, analysing, recording the result on the embedded store with
  :mod:`semqa.registry.sqlite_record`, writing the JSON), against recording the same result
  through MLflow's client (import and call) as before issue 15.
* **Demo** (``--demo``, minutes): ``semqa demo``'s phases, from the times it prints per step.

The host is shared, so figures move with its load (printed); ratios within one run are the
figures to compare.

Run: ``.venv/bin/python benchmarks/bench_performance.py [--images 30] [--repeats 3] [--demo] [--parts ...]``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEMQA = [sys.executable, "-c", "import sys; from semqa.cli import main; sys.exit(main())"]
IJ_JAR = Path("/usr/share/java/ij.jar")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(cmd: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (user + system, the process and all it waited for) of one whole process."""
    t, c = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - c
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed, cpu, proc


def alternate(commands: dict[str, list[str]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each command, the commands alternating within each repeat."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(wall(cmd)[:2])
    return {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in times.items()}


def imagej_available() -> bool:
    return IJ_JAR.is_file() and shutil.which("java") is not None and shutil.which("xvfb-run") is not None


def baseline_command(folder: Path, out: Path) -> tuple[str, list[str]]:
    if imagej_available():
        macro = str(HERE / "imagej_psd.ijm")
        return "ImageJ", ["xvfb-run", "-a", "java", "-jar", str(IJ_JAR), "-batch", macro, f"{folder},{out}"]
    return "skimage-baseline", [sys.executable, str(HERE / "skimage_baseline_psd.py"), str(folder), str(out)]


def baseline_ecds(name: str, out: Path) -> np.ndarray:
    """ECDs (µm) the baseline wrote: ImageJ's calibrated areas (µm²) or the baseline's ECD list."""
    if name == "ImageJ":
        import pandas as pd

        return np.sqrt(4 * pd.read_csv(out)["Area"].to_numpy() / np.pi)
    return np.loadtxt(out, ndmin=1)


def bench_analysis(data: Path, n_images: int, repeats: int) -> None:
    import pandas as pd

    from semqa.stats.psd import d_values

    hr = data / "hr"
    one = data / "one"
    one.mkdir(exist_ok=True)
    first = sorted(hr.glob("*.tif"))[0]
    shutil.copy(first, one / first.name)
    truth = pd.read_csv(data / "particles.csv")
    inside = truth[~truth["touches_border"]]
    rows = []
    for label, folder, n in (("per image", one, 1), ("per lot", hr, n_images)):
        names = {p.name for p in folder.glob("*.tif")}
        true_d50 = float(d_values(inside[inside["image"].isin(names)]["ecd_um"].to_numpy(), quantiles=(0.5,))[0])
        out_json, out_base = data / f"semqa_{n}.json", data / f"baseline_{n}.csv"
        base_name, base_cmd = baseline_command(folder, out_base)
        commands = {
            "semqa": [*SEMQA, "analyze", str(folder), "--no-sr", "--json", str(out_json)],
            "semqa --workers 1": [*SEMQA, "analyze", str(folder), "--no-sr", "--workers", "1"],
            base_name: base_cmd,
        }
        wall(commands["semqa"])  # warm the page cache and the bytecode cache: not per-run costs
        times = alternate(commands, repeats)
        from semqa.analysis import AnalysisResult

        semqa_d50 = AnalysisResult.model_validate_json(out_json.read_text()).psd.d50_um
        base_d50 = float(d_values(baseline_ecds(base_name, out_base), quantiles=(0.5,))[0])
        for name, (t, cpu) in times.items():
            d50 = semqa_d50 if name.startswith("semqa") else base_d50
            rows.append({"scope": f"{label} ({n} × 768²)", "method": name, "wall_s": round(t, 2),
                         "wall_vs_baseline": round(t / times[base_name][0], 2), "cpu_s": round(cpu, 2),
                         "cpu_vs_baseline": round(cpu / times[base_name][1], 2),
                         "D50_um": round(d50, 3) if d50 else None, "true_D50_um": round(true_d50, 3)})
    print(pd.DataFrame(rows).to_string(index=False))


def bench_sr(repeats: int) -> None:
    import torch

    from semqa.results import ModelRef
    from semqa.sr.archs import GeneratorConfig, build_generator
    from semqa.sr.inference import ComputePlan, Upscaler

    config = GeneratorConfig()
    torch.manual_seed(0)
    images = [np.random.default_rng(i).uniform(0.1, 0.9, (192, 192)).astype(np.float32) for i in range(4)]
    # Multiply-adds of every 3×3 convolution per LR pixel, × 2 FLOP each.
    c = config.num_feat
    flop = 2 * 9 * (1 * c + config.num_conv * c * c + c * config.scale**2) * 4 * 192 * 192
    plans = {
        "plan (channels-last)": None,
        "contiguous float32": ComputePlan(torch.contiguous_format, None, tile_batch=4),
    }
    weights = build_generator(config).state_dict()
    ups = {}
    for name, plan in plans.items():
        generator = build_generator(config)
        generator.load_state_dict(weights)
        up = Upscaler(generator, ModelRef(name="bench", scale=config.scale), "cpu", tile_batch=4)
        if plan is not None:
            up.plan = plan
            up.generator = up.generator.to(memory_format=plan.memory_format)
        up.upscale_batch(images)  # first call: oneDNN primitive creation
        ups[name] = up
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    torch.mm(a, b)
    rates: dict[str, list[float]] = {"GEMM 2048² float32": [], **{n: [] for n in ups}}
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        rates["GEMM 2048² float32"].append(2 * 2048**3 / (time.perf_counter() - t) / 1e9)
        for name, up in ups.items():
            t = time.perf_counter()
            up.upscale_batch(images)
            rates[name].append(flop / (time.perf_counter() - t) / 1e9)
    gemm = statistics.median(rates["GEMM 2048² float32"])
    out = ups["plan (channels-last)"].upscale_batch(images)
    ref = ups["contiguous float32"].upscale_batch(images)
    diff = max(float(np.abs(x - y).max()) for x, y in zip(out, ref))
    print(f"SR, default generator ({config.arch}, {c} features, {config.num_conv} convs, ×{config.scale}), "
          f"batch 4 of 192² LR, {torch.get_num_threads()} threads:")
    for name, v in rates.items():
        r = statistics.median(v)
        print(f"  {name:<22} {r:6.1f} GFLOP/s  {r / gemm:5.0%} of GEMM")
    print(f"  max |plan − contiguous| = {diff:.1e}")


def bench_startup(data: Path, repeats: int) -> None:
    image = sorted((data / "hr").glob("*.tif"))[0]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "semqa --help": [*SEMQA, "--help"],
        "semqa analyze (1 image)": [*SEMQA, "analyze", str(image), "--no-sr"],
    }
    times = alternate(commands, repeats)
    print("CLI start-up (whole process, medians):")
    base_wall, base_cpu = times["python -c pass"]
    for name, (t, cpu) in times.items():
        print(f"  {name:<24} wall {t:5.2f} s ({t / base_wall:4.1f}× python -c pass)  CPU {cpu:5.2f} s ({cpu / base_cpu:4.1f}×)")


_BREAKDOWN = r"""
import json, sys, time
cpu, wall = time.process_time, time.perf_counter
marks, c0, w0 = {}, cpu(), wall()
def mark(name):
    global c0, w0
    marks[name] = (cpu() - c0, wall() - w0); c0, w0 = cpu(), wall()
from semqa.analysis import analyze
from semqa.io.images import read_image
mark("import semqa.analysis")
result = analyze([read_image(sys.argv[1])], workers=1)
mark("analyse 1 image (768²)")
if sys.argv[2] == "sqlite":
    from semqa.registry.records import record_result
    recorded = record_result(result)
    mark("record (sqlite3, embedded store)")
else:
    from semqa.registry import records
    document = records.result_document(result)
    digest = records.content_digest(document)
    text = records.canonical_json(records._vouched(document)).decode()
    import mlflow
    mark("import mlflow")
    records.record_with_mlflow("analysis-" + digest[7:19], records._tags(document, digest, "analysis"), f"{records.RESULT_ARTIFACT_DIR}/{records.RESULT_ARTIFACT_FILE}", text)
    mark("record (MLflow client)")
    recorded = result
print(json.dumps({"stages": marks, "json": len(recorded.model_dump_json(indent=2))}))
"""


def bench_breakdown(data: Path, repeats: int) -> None:
    """CPU and wall seconds of each stage of a one-image analysis in a fresh process (medians)."""
    import json

    image = sorted((data / "hr").glob("*.tif"))[0]
    for way in ("sqlite", "mlflow"):
        runs = [json.loads(wall([sys.executable, "-c", _BREAKDOWN, str(image), way])[2].stdout.splitlines()[-1])["stages"]
                for _ in range(repeats)]
        print(f"one-image analyze in one process, record {'without' if way == 'sqlite' else 'through'} MLflow (medians, s):")
        total_cpu = total_wall = 0.0
        for stage in runs[0]:
            c = statistics.median(r[stage][0] for r in runs)
            w = statistics.median(r[stage][1] for r in runs)
            total_cpu, total_wall = total_cpu + c, total_wall + w
            print(f"  {stage:<38} CPU {c:5.2f}  wall {w:5.2f}")
        print(f"  {'in all (interpreter start not incl.)':<38} CPU {total_cpu:5.2f}  wall {total_wall:5.2f}")


def bench_demo(tmp: Path) -> None:
    out = tmp / "demo"
    t, _, proc = wall([*SEMQA, "demo", "--out", str(out)])
    marks = [(int(m[1]), m[2], float(m[3])) for m in re.finditer(r"\[(\d+)/\d+\] (.*?)\s+\(t=(\d+) s\)", proc.stdout)]
    print(f"demo: {t:.0f} s wall in all")
    for (n, text, start), nxt in zip(marks, [m[2] for m in marks[1:]] + [t]):
        print(f"  [{n}] {nxt - start:5.0f} s  {text[:70]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30, help="HR 768² images in the lot (default 30)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="also time `semqa demo` (several minutes)")
    parts = ("analysis", "sr", "startup", "breakdown")
    parser.add_argument("--parts", nargs="+", choices=parts, default=list(parts),
                        help="which parts to run (default all); e.g. `--parts startup breakdown --images 1`")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as each part finishes
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; ImageJ {'found' if imagej_available() else 'absent'}")
    with tempfile.TemporaryDirectory(prefix="semqa-bench-") as tmp:
        from semqa.synth.scenes import SynthConfig, make_pairs

        # The timed `semqa analyze` runs record their results: into a store of this run, not the user's.
        os.environ["SEMQA_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("MLFLOW_TRACKING_URI", None)

        data = Path(tmp) / "data"
        make_pairs(data, args.images, SynthConfig(size_px=768), seed=15, workers=os.cpu_count() or 1)
        if "analysis" in args.parts:
            bench_analysis(data, args.images, args.repeats)
        if "sr" in args.parts:
            bench_sr(args.repeats)
        if "startup" in args.parts:
            bench_startup(data, args.repeats)
        if "breakdown" in args.parts:
            bench_breakdown(data, args.repeats)
        if args.demo:
            bench_demo(Path(tmp))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
