"""Dashboard speed: open the page and compare 3 lots × 3 images of 768 × 768 per product, no SR.

Targets (issue #7): open + first comparison under 30 s on CPU; a rerun under 2 s (cache).
The page is run as Streamlit runs it, with ``streamlit.testing.v1.AppTest`` (same script,
same caches, no browser). The baseline, timed in the same run on the same images, is
:func:`semqa.analysis.compare` called directly: the difference is what the page adds
(decoding, product PSDs, tables, figures, rendering).

    .venv/bin/python benchmarks/bench_dashboard.py [--data DIR] [--bootstrap 1000]

The images are the 768² micrographs :func:`semqa.synth.scenes.make_lots` writes under
``<product>/hr`` (about 1 s per image to make, not counted); ``--data DIR`` keeps them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

TARGET_FIRST_S = 30.0
TARGET_RERUN_S = 2.0
APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def _make_lots(root: Path) -> None:
    from semqa.synth.scenes import ProductSpec, make_lots, synth_config

    if (root / "rld" / "hr").is_dir() and (root / "generic" / "hr").is_dir():
        return
    make_lots(
        root,
        products={"rld": ProductSpec(d50_um=3.0, gsd=1.5), "generic": ProductSpec(d50_um=3.0, gsd=1.5)},
        lots=3,
        images_per_lot=3,
        config=synth_config(size_px=768),
        seed=3,
    )


def _baseline(root: Path, n_bootstrap: int) -> tuple[float, int]:
    from semqa.analysis import AnalysisConfig, compare, load_lots
    from semqa.io.images import read_image

    t0 = time.perf_counter()
    read = lambda p: {lot: [read_image(f) for f in fs] for lot, fs in load_lots(p).items()}  # noqa: E731
    report = compare(read(root / "rld" / "hr"), read(root / "generic" / "hr"), AnalysisConfig(n_bootstrap=n_bootstrap))
    n = sum(r.psd.n for r in (*report.reference.values(), *report.test.values()))
    return time.perf_counter() - t0, n


def _check_verdict(at: object) -> None:
    if at.exception or not any("Verdict:" in e.value for e in (*at.success, *at.error, *at.warning)):
        raise SystemExit(f"the page showed no verdict: {at.exception or [e.value for e in at.error]}")
    if len(at.image) < 5:
        raise SystemExit(f"the page showed {len(at.image)} images, expected the 3 figures and 2 micrographs")


def _page(root: Path) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    at = AppTest.from_file(str(APP), default_timeout=600).run()
    times["open"] = time.perf_counter() - t0
    for product, folder in (("reference", "rld/hr"), ("test", "generic/hr")):
        at.radio(key=f"{product}_source").set_value("Server folder")
        at.run()
        at.selectbox(key=f"{product}_folder").set_value(folder)
    t1 = time.perf_counter()
    at.run()
    times["choose lots"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    at.button(key="compare").click().run()
    times["first comparison"] = time.perf_counter() - t1
    _check_verdict(at)
    times["open → verdict"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    at.run()
    times["rerun (cached)"] = time.perf_counter() - t1
    _check_verdict(at)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder for the generated lots (kept)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for D-value CIs (page default 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = args.data or Path(tmp) / "lots"
        t0 = time.perf_counter()
        _make_lots(root)
        print(f"lots ready in {time.perf_counter() - t0:.1f} s (not counted): {root}")
        os.environ["SEMQA_DASHBOARD_LOTS_ROOT"] = str(root)
        os.environ["SEMQA_DASHBOARD_N_BOOTSTRAP"] = str(args.bootstrap)
        os.environ.pop("SEMQA_DASHBOARD_SERVICE_URL", None)

        # The page goes first so that its "open" pays the imports, as a fresh server does.
        times = _page(root)
        for name, seconds in times.items():
            print(f"page {name:<18} {seconds:6.2f} s")
        base_s, n = _baseline(root, args.bootstrap)
        print(f"baseline semqa.analysis.compare (read + analyse 18 images of 768², {n} particles): {base_s:.2f} s")
        first, rerun = times["open → verdict"], times["rerun (cached)"]
        print(f"page overhead over the baseline: {times['first comparison'] - base_s:+.2f} s")
        print(f"open → verdict {first:.2f} s (target < {TARGET_FIRST_S:.0f} s): {'OK' if first < TARGET_FIRST_S else 'MISSED'}")
        print(f"rerun {rerun:.2f} s (target < {TARGET_RERUN_S:.0f} s): {'OK' if rerun < TARGET_RERUN_S else 'MISSED'}")


if __name__ == "__main__":
    main()
