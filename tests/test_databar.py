"""The instrument's data bar is found and left out; the analysed region is recorded (issue 12).

Two scene families: semqa.synth scenes (HR and LR scans) and bright, saturated disks with
Poisson noise, many of them cut by the bottom edge (the case a flat-row rule could mistake
for a bar).
"""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from skimage.draw import disk
from skimage.filters import gaussian

from semqa.analysis import AnalysisConfig, analyze, compare
from semqa.cli import main
from semqa.errors import InputError
from semqa.io.databar import find_databars
from semqa.io.images import Micrograph, read_image, to_uint, write_image
from semqa.io.region import choose_region, parse_roi
from semqa.synth.databar import LAYOUTS, add_databar, rewrite_as_instrument, write_instrument_tiff
from semqa.synth.scenes import SynthConfig, default_products, make_lots, render_pair


def stored(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """An image as read back from a file of ``bits`` bits per sample."""
    return to_uint(image, bits).astype(np.float32) / (2**bits - 1)


def bright_disks(seed: int, dose: float, shape=(300, 400), n=40) -> np.ndarray:
    """Second family: saturated bright disks (a third of them on the bottom edge), shot noise."""
    rng = np.random.default_rng(seed)
    yield_ = np.full(shape, 0.15)
    for i in range(n):
        row = shape[0] - rng.uniform(0, 10) if i % 3 == 0 else rng.uniform(0, shape[0])
        rr, cc = disk((row, rng.uniform(0, shape[1])), rng.uniform(4, 20), shape=shape)
        yield_[rr, cc] = 1.3  # above full scale: clipped, so flat like a bar's background
    return np.clip(rng.poisson(gaussian(yield_, 1.0) * dose) / dose, 0, 1)


@pytest.fixture(scope="module")
def frames():
    """No-bar frames of both families, as stored at 8 and 16 bits."""
    out = {}
    for seed in range(2):
        hr, lr, _ = render_pair(SynthConfig(size_px=384), np.random.default_rng(seed))
        out[f"synth-hr-{seed}"] = stored(hr, 16)
        out[f"synth-lr-{seed}"] = stored(lr)
    for seed, dose in ((0, 10), (1, 30), (2, 1000)):
        out[f"disks-{seed}-dose{dose}"] = stored(bright_disks(seed, dose))
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dark, antialias", [(True, False), (False, True)], ids=["dark-bitmap", "light-antialiased"])
def test_each_layout_is_found_exactly(frames, layout, dark, antialias):
    rng = np.random.default_rng(len(layout))
    for name, image in frames.items():
        framed, truth = add_databar(image, layout, rng, dark=dark, antialias=antialias)
        region = choose_region(stored(framed), name)
        assert region.source == "auto-databar", (name, region.detail)
        assert (region.x, region.y, region.width, region.height) == truth, (name, region.detail)


def test_no_bar_loses_nothing(frames):
    for name, image in frames.items():
        region = choose_region(image, name)
        assert region.source == "full-frame", (name, region.detail)
        assert (region.y, region.height) == (0, image.shape[0])
    # The disks cut by the bottom edge were flat rows, and the report says why they were kept.
    assert any("not a full-width bar" in n for n in find_databars(frames["disks-2-dose1000"]).notes)


def test_detection_does_not_change_a_frame_without_a_bar(frames):
    mg = Micrograph(name="a.tif", image=frames["synth-hr-0"], pixel_size_um=0.1, bit_depth=16, digest="sha256:0")
    on = analyze([mg], AnalysisConfig(n_bootstrap=0))
    off = analyze([mg], AnalysisConfig(n_bootstrap=0, detect_databar=False))
    assert on.images[0].roi.source == "full-frame" and off.images[0].roi.detail == "data bar detection off"
    assert [p.ecd_um for p in on.particles] == [p.ecd_um for p in off.particles]


def test_a_bar_is_left_out_of_the_analysis(frames):
    image = frames["synth-hr-1"]
    framed, _ = add_databar(image, "bottom-appended", np.random.default_rng(0))
    plain = Micrograph(name="a.tif", image=image, pixel_size_um=0.1, bit_depth=16, digest="sha256:0")
    barred = Micrograph(name="a.tif", image=stored(framed, 16), pixel_size_um=0.1, bit_depth=16, digest="sha256:1")
    config = AnalysisConfig(n_bootstrap=0)
    ref, found = analyze([plain], config), analyze([barred], config)
    blind = analyze([barred], AnalysisConfig(n_bootstrap=0, detect_databar=False))
    assert [p.ecd_um for p in found.particles] == [p.ecd_um for p in ref.particles]
    assert blind.psd.n > ref.psd.n  # without detection the glyphs are counted as particles


def test_a_side_panel_is_left_out_of_the_analysis(frames):
    image = frames["synth-hr-0"]
    framed, truth = add_databar(image, "right-appended", np.random.default_rng(4), dark=False, antialias=True)
    plain = Micrograph(name="a.tif", image=image, pixel_size_um=0.1, bit_depth=16, digest="sha256:0")
    barred = Micrograph(name="a.tif", image=stored(framed, 16), pixel_size_um=0.1, bit_depth=16, digest="sha256:1")
    config = AnalysisConfig(n_bootstrap=0)
    ref, found = analyze([plain], config), analyze([barred], config)
    roi = found.images[0].roi
    assert (roi.x, roi.y, roi.width, roi.height) == truth and "right bar" in roi.detail
    assert [p.ecd_um for p in found.particles] == [p.ecd_um for p in ref.particles]


def dark_edge_rows(image: np.ndarray, dose: float, yield_: float, rows: int, seed: int) -> np.ndarray:
    """``image`` with its bottom ``rows`` replaced by a bare dark substrate: Poisson counts of mean ``yield_ · dose``."""
    out = image.copy()
    out[-rows:] = np.random.default_rng(seed).poisson(yield_ * dose, (rows, image.shape[1])) / dose
    return out


@pytest.mark.parametrize("dose, yield_", [(3, 0.0), (3, 0.001), (3, 0.03), (10, 0.01), (30, 0.0), (100, 0.003)])
def test_dark_substrate_along_the_edge_is_not_a_bar(frames, dose, yield_):
    """Dark substrate rows (flat by shot noise: mostly zero counts) are micrograph, in both scene families.

    Zero yield: exactly flat, no text; 0.001 at dose 3: a few lines all zero, the counts
    scattered at random; the others: no line without a count.
    """
    for i, name in enumerate(("synth-hr-0", "synth-lr-1", "disks-1-dose30")):
        image = stored(dark_edge_rows(frames[name], dose, yield_, 40, seed=i))
        region = choose_region(image, name)
        assert (region.source, region.height) == ("full-frame", image.shape[0]), (name, region.detail)
        assert region.detail == "no data bar found" or "nothing cut" in region.detail, region.detail


@pytest.mark.parametrize("dose, substrate, radius", [(10, 0.5, 150), (10, 0.1, 220), (30, 0.5, 180), (3, 0.3, 200)])
def test_a_dark_particle_on_the_edge_is_not_a_bar(dose, substrate, radius):
    """A large dark particle cut by the bottom edge: flat, zero-count rows over most of the width, kept."""
    rng = np.random.default_rng(radius)
    yield_ = np.full((300, 400), substrate)
    rr, cc = disk((300, 200), radius, shape=yield_.shape)
    yield_[rr, cc] = 0.0
    image = stored(np.clip(rng.poisson(gaussian(yield_, 1.0) * dose) / dose, 0, 1))
    region = choose_region(image, "dark-particle")
    assert (region.source, region.height, region.width) == ("full-frame", 300, 400), region.detail


def test_roi_edge_excludes_like_the_frame_edge(frames):
    mg = Micrograph(name="a.tif", image=frames["synth-hr-0"], pixel_size_um=0.1, bit_depth=16, digest="sha256:0")
    full = analyze([mg], AnalysisConfig(n_bootstrap=0))
    half = analyze([mg], AnalysisConfig(n_bootstrap=0, roi=(0, 0, 384, 192)))
    roi = half.images[0].roi
    assert (roi.source, roi.height) == ("roi-flag", 192)
    # Every particle kept lies inside the region, and no kept particle touches its lower edge.
    assert all(p.centroid_y_um < 19.2 for p in half.particles)
    cut = [p for p in half.excluded_particles if p.exclusion == "border" and p.centroid_y_um > 17.0]
    assert cut, "particles crossing row 192 must be excluded as cut by the region's edge"
    # A particle wholly inside the upper half is measured the same in both (same centroid, same size).
    upper = {round(p.centroid_x_um, 6): p.ecd_um for p in full.particles if p.centroid_y_um < 15}
    inside = {round(p.centroid_x_um, 6): p.ecd_um for p in half.particles if p.centroid_y_um < 15}
    common = set(upper) & set(inside)
    assert len(common) >= 0.8 * len(upper) and all(upper[k] == pytest.approx(inside[k]) for k in common)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "-1,0,5,5", "0,0,0,5", "1.5,0,4,4"])
def test_bad_roi_is_a_clear_error(text):
    with pytest.raises(InputError, match="ROI must be"):
        parse_roi(text)


def test_roi_outside_the_frame_is_refused():
    with pytest.raises(InputError, match="reaches outside"):
        choose_region(np.zeros((100, 100), np.float32), "x.tif", (50, 50, 60, 10))


def test_vendor_tiffs_carry_the_pixel_size_in_the_vendor_tag(tmp_path):
    image = stored(bright_disks(0, 30, shape=(128, 160), n=10))
    write_instrument_tiff(tmp_path / "z.tif", image, 0.00734375, "zeiss")
    write_instrument_tiff(tmp_path / "f.tif", image, 0.00734375, "fei")
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        assert tif.sem_metadata["ap_pixel_size"] == ("Image Pixel Size", 7.34375, "nm")
        assert "ImageDescription" not in tif.pages[0].tags
    with tifffile.TiffFile(tmp_path / "f.tif") as tif:
        assert tif.fei_metadata["Scan"]["PixelWidth"] == pytest.approx(7.34375e-9)
    assert np.array_equal(tifffile.imread(tmp_path / "z.tif"), to_uint(image))


#: Side of the generated lot frames (before a data bar is appended).
LOT_FRAME_PX = 384


@pytest.fixture(scope="module")
def lots_pair(tmp_path_factory):
    """One product's lots as semqa writes them, and the same frames as instruments write them.

    D50 1.2 µm at 0.1 µm/px (12 px): far enough above the 0.36 µm sizing limit that the
    comparison is decided by the statistics, not censored by the resolution; 384 px frames hold
    the 50 particles per unit the PBE design asks.
    """
    root = tmp_path_factory.mktemp("lots")
    products = {"rld": default_products(1.2)["rld"]}
    lots = make_lots(root / "plain", products, lots=3, images_per_lot=10, config=SynthConfig(size_px=LOT_FRAME_PX, d50_um=1.2), seed=5,
                     workers=2)  # the same files for any number of processes
    barred = rewrite_as_instrument(lots, root / "zeiss", vendor="zeiss", layout="bottom-appended", seed=1)
    overlaid = rewrite_as_instrument(lots, root / "fei", vendor="fei", layout="bottom-overlay", seed=2)
    side = rewrite_as_instrument(lots, root / "side", vendor="fei", layout="right-overlay", seed=3)
    return lots / "rld" / "hr", barred / "rld" / "hr", overlaid / "rld" / "hr", side / "rld" / "hr"


def _read(folder, pixel_size=None):
    from semqa.analysis import load_lots

    return {lot: [read_image(p, pixel_size_um=pixel_size) for p in ps] for lot, ps in load_lots(folder).items()}


def _unit_ecds(result) -> list[np.ndarray]:
    """Per-unit ECD arrays of one analysis, a unit being an image, in image order (as ``compare`` forms them)."""
    return [np.array([p.ecd_um for p in result.particles if p.image == s.name], dtype=float) for s in result.images]


def _analyze_lots(lots, config):
    """Every lot's images analysed in one pool of two processes; ``(lot → per-unit ECDs, summaries)``.

    Names get their lot as prefix: lots reuse file names, and one analysis needs unique ones.
    """
    import dataclasses

    flat = [dataclasses.replace(mg, name=f"{lot}/{mg.name}") for lot, mgs in lots.items() for mg in mgs]
    result = analyze(flat, config, workers=2)  # the same result for any number of processes
    per_unit = dict(zip([s.name for s in result.images], _unit_ecds(result)))
    return {lot: [per_unit[f"{lot}/{mg.name}"] for mg in mgs] for lot, mgs in lots.items()}, result.images


@pytest.mark.slow
def test_verdict_unchanged_by_a_bar(lots_pair):
    """The same lots compared with themselves written with a data bar (appended, overlaid, at the side): equivalent.

    The reference is analysed once, in ``compare`` with the appended bar; the overlaid and side
    lots are analysed once each and tested against the reference's per-unit ECDs with
    :func:`semqa.stats.equivalence.compare_products`, the statistics ``compare`` runs on the
    same units (one unit per image, the sizing limit of the coarsest analysed pixel).
    """
    from semqa.stats.censoring import sizing_limit
    from semqa.stats.equivalence import compare_products

    plain, barred, overlaid, side = lots_pair
    config = AnalysisConfig(n_bootstrap=0)
    # Two processes: the same result for any number (tests/test_analysis_parallel.py), sooner.
    appended = compare(_read(plain), _read(barred, 0.1), config, workers=2)
    assert appended.verdict == "equivalent", appended.reason
    # An appended bar hides nothing: the test lots' particles are the reference's, one for one.
    for lot, result in appended.test.items():
        assert [p.ecd_um for p in result.particles] == [p.ecd_um for p in appended.reference[lot].particles]
    reference = {lot: _unit_ecds(result) for lot, result in appended.reference.items()}
    reference_images = [s for r in appended.reference.values() for s in r.images]
    for name, folder in (("drawn", overlaid), ("beside", side)):
        units, images = _analyze_lots(_read(folder, 0.1), config)
        assert {s.roi.source for s in images} == {"auto-databar"}, name
        limit = sizing_limit(max(s.analysed_pixel_size_um for s in [*reference_images, *images]), config.min_pixels)
        stats = compare_products(reference, units, None, limit)
        assert stats.verdict == "equivalent", (name, stats.reason)


@pytest.mark.slow
def test_cli_compare_csv_and_overlays(lots_pair, tmp_path, capsys):
    _, barred, _, _ = lots_pair
    csv, overlays = tmp_path / "t" / "particles.csv", tmp_path / "ov"
    code = main([
        "compare", "--reference", str(barred), "--test", str(barred),
        "--pixel-size", "0.1", "--csv", str(csv), "--overlays", str(overlays), "--json", str(tmp_path / "r.json"),
    ])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    particles, images = pd.read_csv(csv), pd.read_csv(tmp_path / "t" / "particles_images.csv")
    assert set(particles["product"]) == {"reference", "test"} and len(images) == 60
    measured = particles[particles["status"] == "measured"]
    n_ref = sum(r["psd"]["n"] for r in report["reference"].values())
    assert len(measured[measured["product"] == "reference"]) == n_ref
    assert set(particles.loc[particles["status"] == "excluded", "exclusion"]) <= {"border", "too_small"}
    assert particles["exclusion"].notna().sum() == (particles["status"] == "excluded").sum() > 0
    assert {"ecd_um", "area_um2", "feret_max_um", "feret_min_um", "pixel_size_um"} <= set(particles.columns)
    assert (images["roi_source"] == "auto-databar").all() and (images["roi_height"] == LOT_FRAME_PX).all()
    pngs = sorted(overlays.rglob("*.png"))
    assert len(pngs) == 60 and pngs[0].relative_to(overlays).parts[0] in ("reference", "test")
    with Image.open(pngs[0]) as im:
        rgb = np.asarray(im.convert("RGB"))
    frame = read_image(barred / pngs[0].relative_to(overlays / pngs[0].relative_to(overlays).parts[0]).with_suffix(".tif"))
    assert rgb.shape[:2] == frame.shape and frame.shape[0] > LOT_FRAME_PX  # the whole input frame, bar included (dimmed)
    assert (rgb == (40, 220, 60)).all(axis=2).any()  # measured outlines drawn
    assert (rgb == (255, 230, 0)).all(axis=2).any()  # the analysed region drawn


def test_cli_analyze_csv_roi_and_switch(tmp_path, capsys):
    hr, _, _ = render_pair(SynthConfig(size_px=256), np.random.default_rng(3))
    framed, _ = add_databar(hr, "top-overlay", np.random.default_rng(3))
    write_image(tmp_path / "a.tif", framed, pixel_size_um=0.1)
    csv = tmp_path / "a.csv"
    assert main(["analyze", str(tmp_path / "a.tif"), "--csv", str(csv)]) == 0
    assert "auto-databar" in capsys.readouterr().out
    images = pd.read_csv(tmp_path / "a_images.csv")
    assert images.loc[0, "roi_y"] == 23 and images.loc[0, "roi_source"] == "auto-databar"
    assert "product" not in pd.read_csv(csv).columns
    assert main(["analyze", str(tmp_path / "a.tif"), "--roi", "0,100,256,156", "--csv", str(csv)]) == 0
    assert pd.read_csv(tmp_path / "a_images.csv").loc[0, "roi_source"] == "roi-flag"
    assert main(["analyze", str(tmp_path / "a.tif"), "--no-databar-detection", "--csv", str(csv)]) == 0
    assert pd.read_csv(tmp_path / "a_images.csv").loc[0, "roi_source"] == "full-frame"
