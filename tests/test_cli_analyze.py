"""`semqa analyze` / `semqa compare`: the result JSON contract and bad input (issue 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semqa.cli import main
from semqa.io.images import read_image, write_image
from semqa.synth.scenes import SynthConfig, render_pair

PARTICLE_FIELDS = {"ecd_um", "area_um2", "feret_max_um", "feret_min_um", "aspect_ratio", "circularity", "solidity"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """One small HR scene written as a 16-bit TIFF with its pixel size, plus its truth."""
    folder = tmp_path_factory.mktemp("scene")
    config = SynthConfig(size_px=384)
    hr, _, truth = render_pair(config, np.random.default_rng(7))
    write_image(folder / "hr.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16)
    return folder, truth


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semqa.cli", *args], capture_output=True, text=True, timeout=300)


def test_analyze_writes_the_design_json(scene, tmp_path, capsys):
    folder, truth = scene
    out = tmp_path / "r.json"
    assert main(["analyze", str(folder / "hr.tif"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    psd = result["psd"]
    assert psd["weighting"] == "number" and result["psd_volume"]["weighting"] == "volume"
    assert psd["n"] == len(result["particles"]) > 20
    assert psd["d10_um"] < psd["d50_um"] < psd["d90_um"]
    assert psd["span"] == pytest.approx((psd["d90_um"] - psd["d10_um"]) / psd["d50_um"])
    assert PARTICLE_FIELDS <= set(result["particles"][0])
    lineage = result["lineage"]
    assert lineage["input_digests"] == {"hr.tif": read_image(folder / "hr.tif").digest}
    assert lineage["model"] is None and result["sr"] is False
    assert lineage["code_version"]
    # sizes are in µm: the measured median is near the true median of whole particles
    inside = truth[~truth["touches_border"]]
    assert psd["d50_um"] == pytest.approx(float(np.median(inside["ecd_um"])), rel=0.1)
    assert "D50=" in capsys.readouterr().out


def test_rgb_8bit_png_and_16bit_tiff_agree(scene, tmp_path):
    folder, _ = scene
    mg = read_image(folder / "hr.tif")
    rgb = np.repeat((np.clip(mg.image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out16, out8 = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["analyze", str(folder / "hr.tif"), "--json", str(out16)]) == 0
    assert main(["analyze", str(tmp_path / "rgb.png"), "--pixel-size", str(mg.pixel_size_um), "--json", str(out8)]) == 0
    a, b = json.loads(out16.read_text())["psd"], json.loads(out8.read_text())["psd"]
    assert b["d50_um"] == pytest.approx(a["d50_um"], rel=0.03)
    assert abs(a["n"] - b["n"]) <= max(2, 0.05 * a["n"])


def test_blank_image_gives_n_zero(tmp_path):
    write_image(tmp_path / "blank.tif", np.full((128, 128), 0.2, np.float32), pixel_size_um=0.1)
    out = tmp_path / "r.json"
    assert main(["analyze", str(tmp_path / "blank.tif"), "--json", str(out)]) == 0
    psd = json.loads(out.read_text())["psd"]
    assert psd["n"] == 0 and psd["d50_um"] is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "x.png").write_text("not an image"), "not an image"),
        (lambda d: (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "x.png"),
        (lambda d: Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "x.png"), "pixel size unknown"),
    ],
    ids=["text-file", "truncated-png", "no-pixel-size"],
)
def test_bad_input_exits_2_with_one_line(tmp_path, make, message):
    make(tmp_path)
    proc = run_cli("analyze", str(tmp_path / "x.png"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_pixel_limit_and_usage_errors(scene, tmp_path):
    folder, _ = scene
    proc = run_cli("analyze", str(folder / "hr.tif"), "--max-pixels", "1000")
    assert proc.returncode == 2 and "exceeds the limit" in proc.stderr
    proc = run_cli("analyze")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("compare", "--reference", str(tmp_path / "missing"), "--test", str(tmp_path))
    assert proc.returncode == 2 and "not a folder" in proc.stderr


@pytest.fixture(scope="module")
def lots(tmp_path_factory):
    """Three products × 3 lots × 10 small HR images (the PBE design's minimum)."""
    from semqa.synth.scenes import make_lots

    out = tmp_path_factory.mktemp("lots")
    # Two processes: the same files for any number (make_lots' streams are per image), sooner.
    return make_lots(out, lots=3, images_per_lot=10, config=SynthConfig(size_px=512, d50_um=1.5), seed=3, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("generic, verdict", [("generic-equivalent", "equivalent"), ("generic-shifted", "not_equivalent")])
def test_compare_lots_verdicts(lots, tmp_path, generic, verdict, capsys):
    out = tmp_path / "cmp.json"
    code = main(["compare", "--reference", str(lots / "rld" / "hr"), "--test", str(lots / generic / "hr"), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["verdict"] == verdict, report["reason"]
    stats = report["statistics"]
    assert stats["pbe_d50"]["passes"] == (verdict == "equivalent")
    assert set(report["reference"]) == {"lot1", "lot2", "lot3"}
    assert len(report["lineage"]["input_digests"]) == 60
    assert f"verdict: {verdict}" in capsys.readouterr().out
