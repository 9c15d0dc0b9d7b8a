"""Speed and agreement of the focus measure (validation.blur) against the implementation it replaced.

On LR frames of every renderer (``synth``, ``dome``, ``bse``, ``dark``; sharp and defocused by
2 and 3 LR px; 10, 100 and 1000 e⁻/px) and on HR frames, it times per frame (CPU seconds,
medians per frame side) the replaced per-σ Fisher scoring (kept only in ``tests/test_blur.py``,
the baseline), the new fit with the scene fixed at the bare ``f^−3`` (the replaced model) and
the new default (scene correlation length ξ profiled), and prints the largest difference of σ
and its bounds between the first two (they must land on the same grid points) and the focus
decisions of the old and the new model.

    .venv/bin/python benchmarks/bench_blur.py [--frames-per-cell 1] [--sizes 64,256]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

import numpy as np


def _reference():
    """``_reference_estimate`` and ``_lr_frame`` from tests/test_blur.py (the one copy of the replaced code)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "test_blur.py"
    spec = importlib.util.spec_from_file_location("test_blur", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._reference_estimate, module._lr_frame


def _cpu(fn, *args):
    t0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-cell", type=int, default=1)
    parser.add_argument("--sizes", default="64,256", help="LR frame sides (HR scenes 4× larger)")
    args = parser.parse_args()
    from validation.blur import SHARP_SIGMA_LIMIT_PX, blur_estimate

    reference, lr_frame = _reference()
    times: dict[tuple[int, str], list[float]] = {}
    worst = 0.0
    rows = []
    for side in (int(s) for s in args.sizes.split(",")):
        for family in ("synth", "dome", "bse", "dark"):
            for dose in (10.0, 100.0, 1000.0):
                for defocus in (0.0, 2.0, 3.0):
                    for k in range(args.frames_per_cell):
                        frame = lr_frame(family, 4 * side, dose, defocus, [9, side, int(dose), int(defocus), k])
                        old, t_old = _cpu(reference, frame)
                        bare, t_bare = _cpu(blur_estimate, frame, [math.inf])
                        new, t_new = _cpu(blur_estimate, frame)
                        for key, t in (("replaced", t_old), ("new f^-3", t_bare), ("new, ξ profiled", t_new)):
                            times.setdefault((side, key), []).append(t)
                        for a, b in zip((bare.sigma_px, bare.lower_px, bare.upper_px), old[:3]):
                            if not (math.isinf(a) and math.isinf(b)):
                                worst = max(worst, abs(a - b))
                        rows.append((side, family, dose, defocus, old, new))
    print("CPU s per frame (median over frames; the replaced implementation is the baseline)")
    for side in sorted({s for s, _ in times}):
        base = np.median(times[(side, "replaced")])
        line = [f"{side:4d}² LR:"]
        for key in ("replaced", "new f^-3", "new, ξ profiled"):
            med = np.median(times[(side, key)])
            line.append(f"{key} {med:.3f} s ({base / med:.1f}× faster)" if key != "replaced" else f"{key} {med:.3f} s")
        print("  ".join(line), f"[{len(times[(side, 'replaced')])} frames]")
    print(f"largest |Δ| of σ, lower, upper between the replaced fit and the new f^-3 fit: {worst:.4f} px")
    print(f"\nfocus decisions (limit {SHARP_SIGMA_LIMIT_PX:.3f} px): refused = lower bound above it; undetermined = straddles it")
    print("side family  dose defocus | replaced: σ [lower, upper] decision | new: σ [lower, upper] decision")

    def decision(lower: float, upper: float) -> str:
        return "refused" if lower > SHARP_SIGMA_LIMIT_PX else ("undetermined" if upper > SHARP_SIGMA_LIMIT_PX else "in focus")

    for side, family, dose, defocus, old, new in rows:
        print(
            f"{side:4d} {family:6s} {dose:5g} {defocus:4g} px | {old[0]:5.2f} [{old[1]:4.2f}, {old[2]:5.2f}] "
            f"{decision(old[1], old[2]):12s} | {new.sigma_px:5.2f} [{new.lower_px:4.2f}, {new.upper_px:5.2f}] "
            f"{decision(new.lower_px, new.upper_px)}"
        )


if __name__ == "__main__":
    main()
