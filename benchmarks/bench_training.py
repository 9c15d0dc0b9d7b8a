"""Benchmark: train the default CPU configuration briefly, then judge it on held-out pairs.

Generates synthetic SEM pairs with ground truth (:mod:`semqa.synth.scenes`), trains with
:class:`training.config.TrainConfig` defaults for at most ``--minutes`` of optimisation in a
throw-away MLflow store, then prints in one run, on held-out pairs:

* PSNR / SSIM of SR and of bicubic upscaling against HR;
* D50 relative error (number-weighted ECD) of the PSD measured on SR, on LR directly and on
  HR, each against the ground-truth particles (through :func:`semqa.analysis.analyze`, the
  product's pipeline);
* inference throughput in output megapixels/s and achieved GFLOP/s (whole-image FLOPs from
  :class:`torch.utils.flop_counter.FlopCounterMode` / tiled wall time) beside the GFLOP/s
  of a float32 torch matmul measured in the same run.

Targets (issue #4): SR ≥ bicubic + 3 dB; SR D50 error ≤ 4 % and below the LR-direct error.

Usage: ``python benchmarks/bench_training.py [--minutes 10] [--preset default|demo]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _throughput(up, lr: np.ndarray) -> tuple[float, float]:
    """(output megapixels/s, achieved GFLOP/s) of tiled inference on ``lr``."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.from_numpy(lr[None, None]).to(up.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        up.generator(x)
    flops = counter.get_total_flops()
    up.upscale(lr[:64, :64])  # warm-up
    t = time.perf_counter()
    out = up.upscale(lr)
    dt = time.perf_counter() - t
    return out.size / dt / 1e6, flops / dt / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="optimisation budget (default 10)")
    ap.add_argument("--preset", choices=["default", "demo"], default="default")
    ap.add_argument("--n-train", type=int, default=12, help="training pairs (one in five held out for validation)")
    ap.add_argument("--n-test", type=int, default=6, help="held-out test pairs")
    ap.add_argument("--size", type=int, default=512, help="HR side of generated images, px")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default torch's; 1 is faster on a crowded machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="semqa-bench-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    from semqa.analysis import AnalysisConfig, analyze
    from semqa.io.images import read_image
    from semqa.sr.inference import load_upscaler
    from semqa.stats.psd import d_values
    from semqa.synth.scenes import SynthConfig, make_pairs
    from training.config import TrainConfig, demo_config
    from semqa.sr.pairs import load_pairs
    from semqa.evaluation import evaluate_generator
    from training.train import train

    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    (work / "mlruns").mkdir()
    synth = SynthConfig(size_px=args.size)
    t0 = time.perf_counter()
    train_dir = make_pairs(work / "train", args.n_train, synth, seed=0)
    test_dir = make_pairs(work / "test", args.n_test, synth, seed=1000)
    print(f"data: {args.n_train} training + {args.n_test} held-out synthetic pairs, {args.size} px HR, "
          f"×{synth.scale}, {synth.pixel_size_um} µm/px HR ({time.perf_counter() - t0:.0f} s)")

    config = TrainConfig() if args.preset == "default" else demo_config()
    print(f"config: {args.preset}: {config.generator.arch} nf={config.generator.num_feat}, "
          f"{config.pretrain_steps}+{config.gan_steps} steps, batch {config.batch_size}×{config.patch_size}px, "
          f"torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    result = train(config, train_dir, max_seconds=args.minutes * 60)
    train_s = time.perf_counter() - t0
    print(f"training: {result.steps} of {config.total_steps} steps in {train_s / 60:.1f} min "
          f"(incl. validation, evaluation, registration); registered version {result.model_version}")

    up = load_upscaler(f"models:/semqa-generator/{result.model_version}")
    pairs = load_pairs(test_dir, synth.scale)
    m = evaluate_generator(up, pairs)

    truth = pd.read_csv(test_dir / "particles.csv")
    true_d50 = float(d_values(truth.loc[~truth["touches_border"].astype(bool), "ecd_um"].to_numpy())[1])
    names = sorted(p.name for p in pairs)
    lr_mgs = [read_image(test_dir / "lr" / n) for n in names]
    hr_mgs = [read_image(test_dir / "hr" / n) for n in names]
    acfg = AnalysisConfig(n_bootstrap=0)
    d50 = {
        "SR": analyze(lr_mgs, acfg, upscaler=up).psd.d50_um,
        "LR direct": analyze(lr_mgs, acfg).psd.d50_um,
        "HR": analyze(hr_mgs, acfg).psd.d50_um,
    }
    err = {k: abs(v - true_d50) / true_d50 for k, v in d50.items()}

    big = np.tile(pairs[0].lr, (4, 4))[:512, :512].copy()
    mps, gflops = _throughput(up, big)
    mm = _matmul_gflops()

    print()
    print(f"held-out pairs: {m.n_images}, particles (HR segmentation): {m.n_particles_hr}")
    print(f"PSNR  SR {m.psnr:6.2f} dB   bicubic {m.bicubic_psnr:6.2f} dB   gain {m.psnr_gain_db:+.2f} dB")
    print(f"SSIM  SR {m.ssim:6.4f}      bicubic {m.bicubic_ssim:6.4f}")
    print(f"D50 ground truth {true_d50:.3f} µm")
    for k in ("SR", "LR direct", "HR"):
        print(f"D50 from {k:<9} {d50[k]:.3f} µm   relative error {100 * err[k]:5.2f} %")
    print(f"SR vs HR particles: recall {m.recall:.3f}, precision {m.precision:.3f}")
    print(f"inference: {big.shape[1]}×{big.shape[0]} LR → {mps:.2f} output MP/s, {gflops:.1f} GFLOP/s achieved "
          f"(torch float32 matmul 2048²: {mm:.1f} GFLOP/s, same run)")
    checks = {
        "SR beats bicubic by ≥ 3 dB": m.psnr_gain_db >= 3.0,
        "SR D50 error ≤ 4 %": err["SR"] <= 0.04,
        "SR D50 error < LR-direct D50 error": err["SR"] < err["LR direct"],
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
