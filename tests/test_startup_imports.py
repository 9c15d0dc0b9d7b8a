"""Start-up: each command path imports only what it uses (issue 15).

Start-up time is set by what a command imports, so these tests check the imports, not the
time: a fresh interpreter runs the command and reports which heavy modules it loaded.
``semqa --help`` loads no numerical library at all; a one-image ``analyze`` without SR on the
embedded store loads numpy, scipy.ndimage, scikit-image and pydantic, but neither
``scipy.optimize`` (the noise and censoring fits are solved without it), ``scipy.stats``,
pandas (tables and CSV only), torch (SR or the learned segmenter only), MLflow (not on the
embedded store), any app, Pillow (formats other than TIFF), the XML and INI parsers (only
the vendors whose metadata is XML or INI need them; semqa's own TIFF here has neither), the
scale-bar reader (``--scale-bar`` only) nor multiprocessing (a pool of workers only: one image
runs in this process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow_store import fresh_store, migrated_template

import semqa
from semqa.cli import main
from semqa.io.images import write_image
from semqa.synth.scenes import SynthConfig, render_pair

#: Never needed by a plain analysis, nor by ``--help``.
NOT_FOR_ANALYSIS = (
    "scipy.optimize", "scipy.stats", "scipy.fft", "scipy.interpolate", "scipy.signal", "scipy.integrate",
    "pandas", "torch", "mlflow", "sqlalchemy", "great_expectations", "bentoml", "streamlit", "matplotlib",
    "skimage.color", "skimage.metrics", "training", "validation", "service", "dashboard",
    "PIL", "xml.etree.ElementTree", "configparser", "semqa.io.scalebar", "multiprocessing",
)
#: What ``--help`` must not load on top of those: every numerical and imaging library.
NOT_FOR_HELP = (*NOT_FOR_ANALYSIS, "numpy", "scipy", "pydantic", "skimage", "tifffile")


def _loaded(args: list[str], watch: tuple[str, ...], env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run ``semqa ARGS`` in a fresh interpreter: exit code, the ``watch`` modules it loaded, stdout."""
    code = (
        "import json, sys\n"
        "from semqa.cli import main\n"
        "try:\n"
        "    rc = main(sys.argv[2:])\n"
        "except SystemExit as exc:\n"  # argparse's --help exits
        "    rc = exc.code\n"
        "print('LOADED', json.dumps([m for m in json.loads(sys.argv[1]) if m in sys.modules]))\n"
        "sys.exit(rc)\n"
    )
    env = {**(env or os.environ), "PYTHONPATH": str(Path(semqa.__file__).resolve().parents[1])}  # this checkout
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(watch), *args],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOADED ")]
    assert line, proc.stderr
    return proc.returncode, json.loads(line[-1][len("LOADED "):]), proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"], ["compare", "--help"]])
def test_help_loads_no_numerical_library(args: list[str]) -> None:
    rc, loaded, out = _loaded(args, (*NOT_FOR_HELP, "semqa.cli"))
    assert rc == 0 and "usage: semqa" in out
    assert loaded == ["semqa.cli"]  # the check sees modules: the CLI itself is among them


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    config = SynthConfig(size_px=256)
    hr, _, _ = render_pair(config, np.random.default_rng(15))
    return write_image(tmp_path / "hr.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16)


def test_one_image_analyze_loads_only_the_analysis(scene: Path, tmp_path_factory, tmp_path: Path, monkeypatch) -> None:
    fresh_store(migrated_template(tmp_path_factory), tmp_path / "work", monkeypatch)
    # The first record of a store creates its results experiment through MLflow's client (in this
    # process, which has MLflow loaded anyway); later ones, as here, go to the embedded store.
    assert main(["analyze", str(scene), "--no-sr", "--json", str(tmp_path / "first.json")]) == 0
    out = tmp_path / "second.json"
    rc, loaded, _ = _loaded(["analyze", str(scene), "--no-sr", "--json", str(out)],
                            (*NOT_FOR_ANALYSIS, "semqa.analysis", "scipy.ndimage"), env=dict(os.environ))
    assert rc == 0
    assert loaded == ["semqa.analysis", "scipy.ndimage"]  # the analysis ran; nothing it does not need
    first, second = (json.loads((tmp_path / name).read_text()) for name in ("first.json", "second.json"))
    assert second["psd"] == first["psd"] and second["censoring"] == first["censoring"]
