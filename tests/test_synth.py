"""Synthetic SEM pairs: truth matches the rendered shapes, layout, pixel sizes, determinism."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as PolygonPath

from semqa.cli import main
from semqa.sr.degradation import DegradationConfig
from semqa.errors import InputError
from semqa.io.images import read_image
from semqa.synth.scenes import (
    TRUTH_COLUMNS,
    Outline,
    ProductSpec,
    SynthConfig,
    feret_diameters,
    make_lots,
    make_pairs,
    place_particles,
    render_pair,
    render_scene,
)

SMALL = SynthConfig(size_px=192, pixel_size_um=0.1, d50_um=2.0)


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    make_pairs(tmp_path / "a", 2, SMALL, seed=7)
    make_pairs(tmp_path / "b", 2, SMALL, seed=7)
    make_pairs(tmp_path / "c", 2, SMALL, seed=8)
    a, b, c = (_tree_bytes(tmp_path / k) for k in "abc")
    assert a == b
    assert a["hr/synth_0000.tif"] != c["hr/synth_0000.tif"]


def test_output_does_not_depend_on_worker_count(tmp_path):
    make_pairs(tmp_path / "one", 3, SMALL, seed=2, workers=1)
    make_pairs(tmp_path / "two", 3, SMALL, seed=2, workers=2)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


@pytest.mark.parametrize("scale", [2, 4])
def test_layout_pixel_sizes_and_manifest(tmp_path, scale):
    cfg = SynthConfig(size_px=192, pixel_size_um=0.08, d50_um=2.0, degradation=DegradationConfig(scale=scale))
    out = make_pairs(tmp_path, 2, cfg, seed=1, labels=True)
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest["name"]) == ["synth_0000.tif", "synth_0001.tif"]
    for row in manifest.itertuples():
        hr = read_image(out / row.hr_path)
        lr = read_image(out / row.lr_path)
        assert hr.pixel_size_um == pytest.approx(0.08)
        assert lr.pixel_size_um == pytest.approx(0.08 * scale)
        assert lr.shape == (192 // scale, 192 // scale)
        assert hr.shape == (192, 192)
        assert row.hr_sha256 == hr.digest and row.lr_sha256 == lr.digest
        assert row.scale == scale and row.seed == 1
        assert (out / row.labels_path).is_file()
    truth = pd.read_csv(out / "particles.csv")
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert set(truth["image"]) == set(manifest["name"])
    assert manifest["n_particles"].sum() == len(truth)


def test_truth_ecd_matches_rendered_shape():
    scene = render_scene(SynthConfig(size_px=256, pixel_size_um=0.1, d50_um=2.5), np.random.default_rng(11))
    truth = scene.particles
    assert len(truth) >= 10
    px2 = 0.1**2
    inner = truth[~truth["touches_border"]]
    # Pixels covering ≥ half by each particle (a threshold of the noise-free render).
    measured = inner["area_px"] * px2
    rel = (measured - inner["area_um2"]).abs() / inner["area_um2"]
    assert rel.max() < 0.03, rel.max()
    # Summed coverage of all inner particles is their true area to supersampling accuracy.
    cov_area = scene.coverage.sum() * px2
    assert cov_area <= truth["area_um2"].sum() + 1e-6
    if not truth["touches_border"].any():
        assert cov_area == pytest.approx(truth["area_um2"].sum(), rel=0.005)
    np.testing.assert_allclose(inner["ecd_um"], np.sqrt(4 * inner["area_um2"] / np.pi))


def test_threshold_of_clean_render_recovers_the_particles():
    from skimage.measure import label, regionprops

    cfg = SynthConfig(size_px=256, pixel_size_um=0.1, d50_um=2.5, touching_fraction=0.0)
    scene = render_scene(cfg, np.random.default_rng(12))
    found = {r.label: r for r in regionprops(label(scene.coverage >= 0.5))}
    truth = scene.particles[~scene.particles["touches_border"]]
    for row in truth.itertuples():
        y, x = int(round(row.centroid_y_px)), int(round(row.centroid_x_px))
        lab = label(scene.coverage >= 0.5)[y, x]
        if lab == 0:  # a crescent-like outline may not cover its own centroid
            continue
        assert found[lab].area * 0.01 == pytest.approx(row.area_um2, rel=0.03)
        cy, cx = found[lab].centroid
        assert abs(cy - row.centroid_y_px) < 0.5 and abs(cx - row.centroid_x_px) < 0.5


def test_touching_pairs_touch_without_overlap_and_others_keep_their_gap():
    cfg = SynthConfig(size_px=384, pixel_size_um=0.1, d50_um=2.5, touching_fraction=0.4, min_gap_um=0.4)
    placed = place_particles(cfg, np.random.default_rng(13))
    groups: dict[int, list] = {}
    for p in placed:
        if p.touching_group >= 0:
            groups.setdefault(p.touching_group, []).append(p)
    assert len(groups) >= 3
    px = cfg.pixel_size_um

    def um(p):
        return p.outline.xy + p.centre_px * px

    for members in groups.values():
        assert len(members) == 2
        a, b = (um(p) for p in members)
        assert not PolygonPath(a).contains_points(b).any() and not PolygonPath(b).contains_points(a).any()
        gap = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min()
        assert gap < px  # share a boundary: closer than one HR pixel (vertex spacing included)
    for i, p in enumerate(placed):
        for q in placed[i + 1 :]:
            if p.touching_group >= 0 and p.touching_group == q.touching_group:
                continue
            d = np.sqrt(((um(p)[:, None] - um(q)[None]) ** 2).sum(-1)).min()
            assert d > cfg.min_gap_um - 2 * px  # raster placement: within two pixels of the gap


def test_touching_pairs_touch_in_the_label_image():
    from scipy import ndimage

    scene = render_scene(SynthConfig(size_px=256, pixel_size_um=0.1, d50_um=2.5, touching_fraction=0.5), np.random.default_rng(14))
    truth = scene.particles
    pairs = truth[truth["touching_group"] >= 0].groupby("touching_group")["particle_id"].apply(list)
    assert len(pairs) >= 1
    for a, b in pairs:
        grown = ndimage.binary_dilation(scene.labels == a)
        assert (grown & (scene.labels == b)).any()


def test_lognormal_parameters_recovered():
    cfg = SynthConfig(size_px=512, pixel_size_um=0.2, d50_um=3.0, gsd=1.6, fill_fraction=0.2)
    ecd = np.concatenate([render_pair(cfg, np.random.default_rng(s))[2]["ecd_um"].to_numpy() for s in range(4)])
    assert len(ecd) > 700
    logs = np.log(ecd)
    assert np.exp(logs.mean()) == pytest.approx(3.0, rel=0.05)
    assert np.exp(logs.std()) == pytest.approx(1.6, rel=0.05)


def test_images_look_like_se_micrographs():
    cfg = SynthConfig(size_px=256, pixel_size_um=0.1, d50_um=2.5)
    hr, lr, truth = render_pair(cfg, np.random.default_rng(15))
    scene = render_scene(cfg, np.random.default_rng(15))
    inside, outside = scene.coverage > 0.99, scene.coverage == 0
    # Brighter particles on a darker substrate, in the noisy HR scan too.
    assert hr[inside].mean() > hr[outside].mean() + 0.2
    # Edge effect: a particle's boundary band is brighter than its core.
    from scipy import ndimage

    core = ndimage.binary_erosion(scene.labels > 0, iterations=6)
    band = (scene.labels > 0) & ~ndimage.binary_erosion(scene.labels > 0, iterations=2)
    assert scene.clean[band].mean() > scene.clean[core].mean() + 0.05
    # Shot noise: substrate is not flat.
    assert hr[outside].std() > 0.01
    assert lr.shape == (64, 64)


def test_feret_diameters_of_known_shapes():
    t = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    ellipse = np.stack([3 * np.cos(t), 1 * np.sin(t)], axis=1)
    fmax, fmin = feret_diameters(ellipse)
    assert fmax == pytest.approx(6.0, rel=1e-4) and fmin == pytest.approx(2.0, rel=1e-4)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    fmax, fmin = feret_diameters(square)
    assert fmax == pytest.approx(np.sqrt(2)) and fmin == pytest.approx(1.0)
    assert Outline(square).area == pytest.approx(1.0)


def test_border_particles_flagged():
    cfg = SynthConfig(size_px=128, pixel_size_um=0.1, d50_um=2.5, fill_fraction=0.3)
    truth = render_scene(cfg, np.random.default_rng(16)).particles
    assert truth["touches_border"].any()
    near = (truth["centroid_x_px"] < 0) | (truth["centroid_y_px"] < 0) | (truth["centroid_x_px"] > 127) | (truth["centroid_y_px"] > 127)
    assert truth.loc[near, "touches_border"].all()
    # LR border ring is wider, so every HR border particle touches the LR border too.
    assert (truth["touches_border_lr"] | ~truth["touches_border"]).all()


def test_lots_layout_and_between_lot_variation(tmp_path):
    from semqa.io.images import list_images

    def load_lots(folder):  # the DIR/<lot>/<images> layout semqa compare reads
        return {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir()}

    products = {"rld": ProductSpec(d50_um=2.0), "generic": ProductSpec(d50_um=2.5, gsd=1.4)}
    out = make_lots(tmp_path, products, lots=3, images_per_lot=2, config=SMALL, seed=3, lot_cv=0.05)
    for product in products:
        lots = load_lots(out / product / "lr")
        assert sorted(lots) == ["lot1", "lot2", "lot3"]
        assert all(len(files) == 2 for files in lots.values())
        assert sorted(load_lots(out / product / "hr")) == ["lot1", "lot2", "lot3"]
        lot_table = pd.read_csv(out / product / "lots.csv")
        assert lot_table["d50_um"].nunique() == 3
        assert lot_table["d50_um"].between(0.8 * products[product].d50_um, 1.2 * products[product].d50_um).all()
        truth = pd.read_csv(out / product / "particles.csv")
        assert set(truth["lot"]) == {"lot1", "lot2", "lot3"}
        assert (truth["product"] == product).all()
    # A product's images depend on its own name and the seed, not on the other products.
    alone = make_lots(tmp_path / "alone", {"generic": products["generic"]}, lots=3, images_per_lot=2, config=SMALL, seed=3, lot_cv=0.05)
    assert _tree_bytes(alone / "generic") == _tree_bytes(out / "generic")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size_px": 190},  # not a multiple of scale 4
        {"gsd": 0.9},
        {"aspect_min": 2.0, "aspect_max": 1.5},
        {"d50_um": 30.0, "size_px": 128},
        {"d50_um": 0.05},
        {"bit_depth": 12},
        {"fill_fraction": 0.0},
        {"unknown": 1},
    ],
)
def test_bad_config_rejected(kwargs):
    from semqa.synth.scenes import synth_config

    with pytest.raises(InputError):
        synth_config(**{"size_px": 192, "d50_um": 2.0, **kwargs})


def test_bad_counts_rejected(tmp_path):
    with pytest.raises(InputError):
        make_pairs(tmp_path, 0, SMALL)
    with pytest.raises(InputError):
        make_lots(tmp_path, {"rld": ProductSpec(d50_um=2.0)}, lots=0, config=SMALL)
    with pytest.raises(InputError):
        make_lots(tmp_path, {"../x": ProductSpec(d50_um=2.0)}, lots=1, images_per_lot=1, config=SMALL)


def test_cli_writes_pairs_and_lots(tmp_path, capsys):
    rc = main(["synth", str(tmp_path), "--pairs", "2", "--size", "128", "--d50", "2", "--lots", "--n-lots", "1",
               "--images-per-lot", "1", "--seed", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "hr") in out and "generic-shifted" in out
    assert len(list((tmp_path / "lr").glob("*.tif"))) == 2
    for product, d50 in (("rld", 2.0), ("generic-equivalent", 2.0), ("generic-shifted", 2.5)):
        assert len(list((tmp_path / "lots" / product / "lr" / "lot1").glob("*.tif"))) == 1
        assert pd.read_csv(tmp_path / "lots" / product / "lots.csv")["d50_um"].iloc[0] == pytest.approx(d50, rel=0.2)


@pytest.mark.parametrize(
    "args", [["--scale", "3"], ["--pairs", "0"], ["--workers", "0"], ["--seed", "-1"], ["--lots", "--lot-cv", "-0.1"], ["--size", "130"], ["--gsd", "0.5"], ["--pixel-size", "-1"]]
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args):
    assert main(["synth", str(tmp_path), "--size", "128", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("semqa:") and len(err.strip().splitlines()) == 1
