"""Pixel size from the data bar's scale bar: measured on synthetic bars, opt-in, labelled, warned (issue 12).

Two scene families (semqa.synth scenes and Poisson-noisy bright disks), every data bar layout,
pixel sizes from 7.3 nm to 0.37 µm; the truth is the pixel size the bar was drawn for.
"""

import json

import numpy as np
import pytest
import tifffile
from test_databar import bright_disks, stored

from semqa.cli import main
from semqa.errors import InputError
from semqa.io.images import read_image, to_uint, write_image
from semqa.io.scalebar import find_scale_bar, pixel_size_from_scale_bar
from semqa.synth.databar import LAYOUTS, SIDE_LAYOUTS, add_databar, scale_bar_length_um
from semqa.synth.scenes import SynthConfig, render_pair


@pytest.fixture(scope="module")
def scenes():
    hr, _, _ = render_pair(SynthConfig(size_px=320), np.random.default_rng(7))
    return {"synth": stored(hr, 16), "disks": stored(bright_disks(3, 30, shape=(300, 360)))}


def printed_length_um(layout: str, frame_width: int, pixel_size_um: float) -> float:
    """The label the synthetic bar prints: a 1-2-5 length near a fifth of the field (of the panel for side layouts)."""
    if layout in SIDE_LAYOUTS:
        cols = max(32, round(0.12 * frame_width))
        return scale_bar_length_um(5 * (cols - 8) * pixel_size_um)
    return scale_bar_length_um(frame_width * pixel_size_um)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pixel_size_um", [0.0073, 0.1, 0.37])
def test_pixel_size_from_the_scale_bar_within_a_pixel(scenes, layout, pixel_size_um):
    for name, image in scenes.items():
        for dark, antialias in ((True, False), (False, True)):
            framed, _ = add_databar(image, layout, np.random.default_rng(2), pixel_size_um=pixel_size_um, dark=dark, antialias=antialias)
            label = printed_length_um(layout, image.shape[1], pixel_size_um)
            um, source, warning = pixel_size_from_scale_bar(stored(framed), label, name)
            n = find_scale_bar(stored(framed)).length_px
            # The instrument rounds the drawn bar to whole pixels: at most half a pixel of N.
            assert abs(um / pixel_size_um - 1) <= 0.5 / n + 1e-9, (name, layout, dark, n)
            assert source == f"scale bar ({n} px = {label:g} µm, read from the data bar)"
            assert "less accurate than instrument metadata" in warning


def test_no_bar_or_no_scale_bar_is_a_clear_error(scenes):
    with pytest.raises(InputError, match="no data bar found"):
        pixel_size_from_scale_bar(scenes["synth"], 5.0, "plain.tif")
    framed, _ = add_databar(scenes["synth"], "bottom-appended", np.random.default_rng(2))
    framed = stored(framed)
    bar = find_scale_bar(framed)
    background = framed[-1, 0]
    framed[bar.y : bar.y + bar.thickness_px, bar.x : bar.x + bar.length_px] = background  # erase the line only
    with pytest.raises(InputError, match="holds no scale bar"):
        find_scale_bar(framed, "x.tif")
    with pytest.raises(InputError, match="must be positive"):
        pixel_size_from_scale_bar(framed, 0.0)


def _instrument_file_without_pixel_size(path, image, layout="bottom-overlay", pixel_size_um=0.1):
    framed, _ = add_databar(image, layout, np.random.default_rng(5), pixel_size_um=pixel_size_um)
    tifffile.imwrite(path, to_uint(framed), photometric="minisblack", metadata=None)
    return path


def test_cli_scale_bar_is_opt_in_labelled_and_warned(scenes, tmp_path, capsys):
    path = _instrument_file_without_pixel_size(tmp_path / "a.tif", scenes["synth"])
    assert read_image(path).pixel_size_um is None
    assert main(["analyze", str(path)]) == 2  # never a silent guess
    assert "--scale-bar" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert main(["analyze", str(path), "--scale-bar", "5um", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    image = json.loads(out.read_text())["images"][0]
    assert image["pixel_size_source"] == "scale bar (50 px = 5 µm, read from the data bar)"
    assert image["pixel_size_um"] == pytest.approx(0.1)
    assert any("less accurate" in w for w in image["warnings"])
    assert "pixel size from scale bar (50 px = 5 µm" in printed
    assert "warning: 1 image(s) sized from the data bar's scale bar" in printed
    # 500 nm written in nm: the same bar, a tenth of the size.
    assert main(["analyze", str(path), "--scale-bar", "500 nm", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"][0]["pixel_size_um"] == pytest.approx(0.01)


def test_cli_metadata_wins_over_the_scale_bar(scenes, tmp_path, capsys):
    framed, _ = add_databar(scenes["disks"], "bottom-appended", np.random.default_rng(5), pixel_size_um=0.1)
    write_image(tmp_path / "m.tif", framed, pixel_size_um=0.1)
    out = tmp_path / "r.json"
    assert main(["analyze", str(tmp_path / "m.tif"), "--scale-bar", "20um", "--json", str(out)]) == 0
    image = json.loads(out.read_text())["images"][0]
    assert image["pixel_size_source"] == "tiff:ImageDescription:pixel_size_um" and image["pixel_size_um"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "args, message",
    [(["--scale-bar", "10"], "expected a length with a unit"), (["--scale-bar", "ten um"], "expected a length"),
     (["--scale-bar", "5um", "--pixel-size", "0.1"], "would not be used"), (["--scale-bar", "5 furlongs"], "unknown length unit")],
)
def test_cli_bad_scale_bar_labels(scenes, tmp_path, capsys, args, message):
    path = _instrument_file_without_pixel_size(tmp_path / "a.tif", scenes["synth"])
    assert main(["analyze", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
