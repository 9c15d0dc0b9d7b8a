"""The Streamlit dashboard, driven with ``streamlit.testing.v1.AppTest`` on generated lots.

The page must show what :func:`semqa.analysis.compare` computes for the same images (the
test recomputes it), and bad input must show a message while the rest keeps working.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import report as report_export
from dashboard.config import DashboardSettings
from dashboard.inputs import lot_from_uploads, product_folders
from dashboard.sections import OVERLAY_CAPTION
from semqa.analysis import AnalysisConfig, compare, load_lots
from semqa.io.digests import bytes_digest
from semqa.io.images import encode_image, read_image, read_image_bytes, write_image

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
N_BOOTSTRAP = 200
#: AppTest's default is 3 s per run; an analysis of 18 small images takes longer on 2 shared cores.
TIMEOUT_S = 180


@pytest.fixture(autouse=True)
def _settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEMQA_DASHBOARD_N_BOOTSTRAP", str(N_BOOTSTRAP))
    monkeypatch.delenv("SEMQA_DASHBOARD_LOTS_ROOT", raising=False)
    monkeypatch.delenv("SEMQA_DASHBOARD_SERVICE_URL", raising=False)
    # Registry look-ups (SR toggle) go to an empty store of this test, never the user's.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _lots(folder: Path) -> dict[str, list[Path]]:
    return load_lots(folder)


def _upload(at: AppTest, product: str, lots: dict[str, list[tuple[str, bytes]]]) -> None:
    at.number_input(key=f"{product}_lots").set_value(len(lots))
    at.run()
    for i, (lot, files) in enumerate(lots.items()):
        at.text_input(key=f"{product}_lot{i}_name").set_value(lot)
        at.file_uploader(key=f"{product}_lot{i}_files").set_value([(n, data, "image/tiff") for n, data in files])


def _files(folder: Path) -> dict[str, list[tuple[str, bytes]]]:
    return {lot: [(p.name, p.read_bytes()) for p in paths] for lot, paths in _lots(folder).items()}


def _banner_texts(at: AppTest) -> list[str]:
    return [e.value for e in (*at.success, *at.error, *at.warning) if "Verdict:" in e.value]


def _expected(lots_root: Path) -> object:
    read = lambda folder: {lot: [read_image(p) for p in ps] for lot, ps in _lots(folder).items()}  # noqa: E731
    return compare(read(lots_root / "rld" / "lr"), read(lots_root / "generic" / "lr"), AnalysisConfig(n_bootstrap=N_BOOTSTRAP))


def test_main_flow_uploads_compare_and_show_results(lots_root: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert at.button(key="compare").disabled  # nothing uploaded yet
    _upload(at, "reference", _files(lots_root / "rld" / "lr"))
    _upload(at, "test", _files(lots_root / "generic" / "lr"))
    at.run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="compare").click().run()
    assert not at.exception

    expected = _expected(lots_root)
    banners = _banner_texts(at)
    assert len(banners) == 1
    assert expected.verdict.replace("_", " ").upper() in banners[0] and expected.reason in banners[0]

    stats = at.dataframe[0].value
    ks = stats.loc[stats["statistic"] == "Kolmogorov–Smirnov D", "value"].item()
    assert ks == pytest.approx(expected.statistics.ks_statistic)
    w = stats.loc[stats["statistic"] == "Wasserstein distance (µm)", "value"].item()
    assert w == pytest.approx(expected.statistics.wasserstein_um)

    # D-values per lot are those of the analysis, with their confidence limits.
    dvalues = at.dataframe[1].value
    for product, lots in (("reference", expected.reference), ("test", expected.test)):
        for lot, result in lots.items():
            row = dvalues[(dvalues["product"] == product) & (dvalues["lot"] == lot)].iloc[0]
            assert row["particles"] == result.psd.n
            assert row["D50 (µm)"] == pytest.approx(result.psd.d50_um)
            assert (row["D50 low"], row["D50 high"]) == pytest.approx(result.psd.d50_ci_um)
    assert set(dvalues["lot"]) == {"lot1", "lot2", "lot3", "(all lots)"}

    # Figures: number and volume PSDs, D50 per lot; images with outlines.
    captions = [c for img in at.image for c in img.captions]
    assert len(at.image) == 5, captions  # 3 figures, the chosen image as acquired and outlined
    assert OVERLAY_CAPTION in captions
    lineage = at.dataframe[4].value.set_index("item")["value"]
    assert lineage["analysis code version"] == expected.lineage.code_version
    assert lineage["super-resolution"] == "off"

    particles = at.dataframe[3].value
    results = (*expected.reference.values(), *expected.test.values())
    n_all = sum(r.psd.n for r in results)
    assert (particles["status"] == "measured").sum() == n_all  # excluded particles are listed too, marked
    assert len(particles) == n_all + sum(len(r.excluded_particles) for r in results)
    labels = {b.label for b in at.get("download_button")}
    assert {"Download particles (CSV)", "Download report (HTML)", "Download report (PDF)"} <= labels

    # Filtering the particle table: only test lot2.
    at.multiselect(key="filter_product").set_value(["test"])
    at.multiselect(key="filter_lot").set_value(["lot2"])
    at.run()
    shown = at.dataframe[3].value
    assert (shown["status"] == "measured").sum() == expected.test["lot2"].psd.n
    assert len(shown) == expected.test["lot2"].psd.n + len(expected.test["lot2"].excluded_particles)
    assert set(shown["product"]) == {"test"} and set(shown["lot"]) == {"lot2"}
    assert _banner_texts(at) == banners  # the rerun is served from the cache, same verdict


def test_server_folder_source(lots_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMQA_DASHBOARD_LOTS_ROOT", str(lots_root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    for product, folder in (("reference", "rld/lr"), ("test", "generic/lr")):
        at.radio(key=f"{product}_source").set_value("Server folder")
        at.run()
        assert at.selectbox(key=f"{product}_folder").value is None  # nothing preselected on either side
        at.selectbox(key=f"{product}_folder").set_value(folder)
    at.run()
    at.button(key="compare").click().run()
    assert not at.exception
    expected = _expected(lots_root)
    banners = _banner_texts(at)
    assert len(banners) == 1 and expected.reason in banners[0]


def test_bad_inputs_show_messages_and_the_rest_works(lots_root: Path) -> None:
    reference = _files(lots_root / "rld" / "lr")
    test = _files(lots_root / "generic" / "lr")
    reference["lot1"].append(("notes.txt", b"this is not an image"))
    test["lot2"].append(("unsized.png", encode_image(np.full((64, 64), 0.5), "png")))  # PNG: no pixel size
    blank = encode_image(np.full((128, 128), 0.3), "tiff", pixel_size_um=0.4)
    test["empty"] = [("blank.tif", blank)]

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    _upload(at, "reference", reference)
    _upload(at, "test", test)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("notes.txt" in e and "not an image" in e for e in errors), errors
    assert any("unsized.png" in e and "pixel size unknown" in e for e in errors), errors

    at.button(key="compare").click().run()
    assert not at.exception
    assert len(_banner_texts(at)) == 1  # the comparison ran on the usable images
    warnings = [w.value for w in at.warning]
    assert any("'empty'" in w and "no particles" in w for w in warnings), warnings

    # Entering a pixel size makes the PNG usable (it overrides metadata for all images).
    at.number_input(key="pixel_size").set_value(0.4)
    at.run()
    assert not any("unsized.png" in e.value for e in at.error)
    assert any("inputs changed" in i.value for i in at.info)


def test_lot_with_only_bad_files_is_left_out(lots_root: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    _upload(at, "reference", {"bad": [("a.tif", b"II*\x00garbage")]})
    at.run()
    assert not at.exception
    assert any("a.tif" in e.value for e in at.error)
    assert any("'bad'" in w.value and "no usable images" in w.value for w in at.warning)
    assert at.button(key="compare").disabled


def test_sr_without_registered_model_falls_back_with_a_message() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.toggle(key="use_sr").set_value(True).run()
    assert not at.exception
    assert any("No version of semqa-generator is registered" in w.value for w in at.sidebar.warning)


def test_report_exports_hold_verdict_figures_tables_and_lineage(lots_root: Path) -> None:
    expected = _expected(lots_root)
    summary = report_export.summarize(expected, AnalysisConfig(n_bootstrap=N_BOOTSTRAP))
    page = report_export.render_html(expected, summary, "QA record")
    assert f"Verdict: {expected.verdict.replace('_', ' ').upper()}" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
    assert expected.lineage.code_version in page
    assert report_export.covers(expected) in page.replace("&#x27;", "'") and "Reference (RLD): lots lot1" in page
    assert "<td>Reference (RLD)</td>" in page and "<td>Test (generic)</td>" in page
    assert page.count('<div class="scroll"><table') == page.count("<table")  # wide tables scroll, the page does not
    for result in expected.reference.values():
        for image in result.images:
            assert image.digest in page
    pdf = report_export.render_pdf(expected, summary, "QA record")
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 6  # summary, 3 figures, 2 D-value tables, images, notes


def test_inputs_helpers(tmp_path: Path, lots_root: Path) -> None:
    assert product_folders(lots_root) == ["generic/hr", "generic/lr", "rld/hr", "rld/lr"]
    assert product_folders(None) == [] and product_folders(tmp_path / "missing") == []
    lot = lot_from_uploads("x", [("e.bin", b""), ("ok.tif", encode_image(np.zeros((8, 8)), "tiff", pixel_size_um=1.0))], None)
    assert [m.name for m in lot.micrographs] == ["ok.tif"] and "empty file" in lot.problems[0]
    assert DashboardSettings().default_alias == "production"


def test_original_files_are_the_bytes_read(tmp_path: Path) -> None:
    """The service path sends each file as read, checked against its digest; sidecar sizes only for folder files."""
    from dashboard.runner import original_files

    from semqa.errors import InputError

    png = write_image(tmp_path / "lot" / "a.png", np.full((16, 16), 0.5), pixel_size_um=0.25)
    upload = encode_image(np.full((16, 16), 0.2), "tiff", pixel_size_um=0.5)
    lot = lot_from_uploads("up", [("b.tif", upload)], None)
    lots = {"folder": [read_image(png)], "up": lot.micrographs}
    files = original_files(lots, lot.uploads, None)
    assert [(f.name, f.data, f.pixel_size_um) for f in files["folder"]] == [("a.png", png.read_bytes(), 0.25)]
    assert [(f.name, f.data, f.pixel_size_um) for f in files["up"]] == [("b.tif", upload, None)]
    assert lot.uploads == {bytes_digest(upload): upload}
    assert original_files(lots, lot.uploads, 0.3)["folder"][0].pixel_size_um is None  # the override is sent instead
    with pytest.raises(InputError, match="no longer available"):
        original_files(lots, {}, None)
    png.write_bytes(encode_image(np.zeros((16, 16)), "png"))
    with pytest.raises(InputError, match="changed since the page read it"):
        original_files(lots, lot.uploads, None)


@pytest.mark.slow
def test_sr_comparison_with_the_production_model(
    lots_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny generator trained and promoted for real; the page preselects it and records it."""
    from registry_support import promoted_template, use_copy

    from semqa.sr.inference import load_upscaler
    from semqa.registry.lineage import LineageBroken, trace_version

    # Version 1 promoted to staging then production once per session (registry_support).
    template = promoted_template(tmp_path_factory)
    use_copy(template, tmp_path, monkeypatch)

    # One lot of two images per product keeps the SR pass short.
    pick = lambda folder: {"lot1": _files(folder)["lot1"][:2]}  # noqa: E731
    reference, test = pick(lots_root / "rld" / "lr"), pick(lots_root / "generic" / "lr")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.toggle(key="use_sr").set_value(True).run()
    assert at.selectbox(key="model_version").value.version == "1"
    assert "@production" in at.selectbox(key="model_version").value.label
    _upload(at, "reference", reference)
    _upload(at, "test", test)
    at.run()
    at.button(key="compare").click().run()
    assert not at.exception

    upscaler = load_upscaler("models:/semqa-generator@production")
    decode = lambda lots: {lot: [read_image_bytes(d, n) for n, d in files] for lot, files in lots.items()}  # noqa: E731
    expected = compare(decode(reference), decode(test), AnalysisConfig(n_bootstrap=N_BOOTSTRAP), upscaler=upscaler)
    banners = _banner_texts(at)
    assert len(banners) == 1 and expected.reason in banners[0]
    dvalues = at.dataframe[1].value
    row = dvalues[(dvalues["product"] == "test") & (dvalues["lot"] == "lot1")].iloc[0]
    assert row["particles"] == expected.test["lot1"].psd.n
    assert row["D50 (µm)"] == pytest.approx(expected.test["lot1"].psd.d50_um)

    lineage = at.dataframe[4].value.set_index("item")["value"]
    assert lineage["super-resolution"] == "on"
    assert lineage["model version"] == "1" and lineage["registry alias"] == "production"
    assert lineage["training run"] == template["run_id"]
    try:
        chain = trace_version("1")
    except LineageBroken as exc:
        chain = exc.report
    digest = next(link.details["digest"] for link in chain.links if link.step == "dataset")
    assert lineage["training data digest"] == digest
    assert lineage["model lineage chain"] == ("intact" if chain.ok else "BROKEN at " + ", ".join(b.step for b in chain.broken))
    captions = [c for img in at.image for c in img.captions]
    assert any("Super-resolved (SR), model version 1" in c for c in captions), captions
    assert any("low resolution (LR)" in c for c in captions)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_service_is_a_message(lots_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMQA_DASHBOARD_SERVICE_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("SEMQA_API_TOKEN", "dashboard-test-token")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert any("service at http://127.0.0.1" in c.value for c in at.sidebar.caption)
    _upload(at, "reference", {"lot1": _files(lots_root / "rld" / "lr")["lot1"]})
    _upload(at, "test", {"lot1": _files(lots_root / "generic" / "lr")["lot1"]})
    at.run()
    at.button(key="compare").click().run()
    assert not at.exception
    assert any("could not run" in e.value and "unreachable" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_comparison_through_the_service_equals_in_process(
    lots_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``semqa service serve`` of the real service on loopback; the page sends the lots there.

    Without SR the numbers must equal the in-process analysis. With SR only the model
    version is checked: the service batches tiles across requests, and batched float
    inference need not match an unbatched run bit for bit.
    """
    from registry_support import promoted_template, use_copy

    from service.launch import running_service

    # Version 1 promoted to staging then production once per session (registry_support).
    template = promoted_template(tmp_path_factory)
    use_copy(template, tmp_path, monkeypatch)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("SEMQA_API_TOKEN", "dashboard-test-token")
    monkeypatch.delenv("SEMQA_MODEL_URI", raising=False)
    with running_service(_free_port(), log_path=tmp_path / "service.log") as url:
        monkeypatch.setenv("SEMQA_DASHBOARD_SERVICE_URL", url)
        pick = lambda folder: {"lot1": _files(folder)["lot1"][:2]}  # noqa: E731
        reference, test = pick(lots_root / "rld" / "lr"), pick(lots_root / "generic" / "lr")
        # A server folder whose lot holds a PNG sized only by its sidecar, beside a TIFF.
        folder_root = tmp_path / "server-lots"
        sources = _lots(lots_root / "rld" / "lr")["lot2"][:2]
        mixed = folder_root / "mixed" / "lot2"
        mixed.mkdir(parents=True)
        (mixed / sources[0].name).write_bytes(sources[0].read_bytes())
        sized = read_image(sources[1])
        write_image(mixed / "sidecar.png", sized.image, pixel_size_um=sized.pixel_size_um)
        monkeypatch.setenv("SEMQA_DASHBOARD_LOTS_ROOT", str(folder_root))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
        _upload(at, "reference", reference)
        _upload(at, "test", test)
        at.run()
        at.button(key="compare").click().run()
        assert not at.exception and not [e.value for e in at.error]
        without_sr = (_banner_texts(at), at.dataframe[1].value, at.dataframe[4].value.set_index("item")["value"])

        # With SR the page names the registered version it chose; the service serves it.
        at.toggle(key="use_sr").set_value(True).run()
        at.button(key="compare").click().run()
        assert not at.exception and not [e.value for e in at.error]
        with_sr = at.dataframe[4].value.set_index("item")["value"]
        # The files themselves travel: the service records the digests an in-process run records.
        at.toggle(key="use_sr").set_value(False)
        at.radio(key="reference_source").set_value("Server folder").run()
        at.selectbox(key="reference_folder").set_value("mixed").run()
        at.button(key="compare").click().run()
        assert not at.exception and not [e.value for e in at.error]
        folder_run = (_page_digests(at), at.dataframe[1].value)
        # A PNG with no pixel size is usable once the user enters one, which then holds for every image.
        unsized = ("unsized.png", encode_image(read_image(sources[1]).image, "png"))
        with_png = {"lot1": [*test["lot1"], unsized]}
        _upload(at, "test", with_png)
        at.number_input(key="pixel_size").set_value(0.3).run()
        at.button(key="compare").click().run()
        assert not at.exception and not [e.value for e in at.error]
        user_run = (_page_digests(at), at.dataframe[1].value)

    # Without SR the service computes exactly what the dashboard computes in-process.
    decode = lambda lots: {lot: [read_image_bytes(d, n) for n, d in files] for lot, files in lots.items()}  # noqa: E731
    expected = compare(decode(reference), decode(test), AnalysisConfig(n_bootstrap=N_BOOTSTRAP))
    banners, dvalues, lineage = without_sr
    assert len(banners) == 1 and expected.reason in banners[0]
    for product, lots in (("reference", expected.reference), ("test", expected.test)):
        row = dvalues[(dvalues["product"] == product) & (dvalues["lot"] == "lot1")].iloc[0]
        assert row["particles"] == lots["lot1"].psd.n
        assert row["D50 (µm)"] == pytest.approx(lots["lot1"].psd.d50_um)
    assert lineage["super-resolution"] == "off"
    assert with_sr["super-resolution"] == "on" and with_sr["model version"] == "1"
    assert with_sr["training run"] == template["run_id"]

    # Served runs record each original file's digest, as in-process runs do, with the same sizes.
    folder_files = sorted(mixed.iterdir())
    assert [p.name for p in folder_files] == sorted([sources[0].name, "sidecar.json", "sidecar.png"])
    folder_images = [p for p in folder_files if p.suffix != ".json"]
    runs = (  # (page, in-process reference lots, in-process test lots, uploaded test files)
        (folder_run, {"lot2": [read_image(p) for p in folder_images]}, decode(test), test),
        (user_run, {"lot2": [read_image(p, pixel_size_um=0.3) for p in folder_images]},
         {lot: [read_image_bytes(d, n, pixel_size_um=0.3) for n, d in files] for lot, files in with_png.items()}, with_png),
    )
    for (page_digests, dvalues), ref_mgs, test_mgs, test_files in runs:
        local = compare(ref_mgs, test_mgs, AnalysisConfig(n_bootstrap=N_BOOTSTRAP))
        files = {("reference", "lot2", p.name): p.read_bytes() for p in folder_images}
        files.update({("test", lot, n): d for lot, fs in test_files.items() for n, d in fs})
        assert page_digests == {key: bytes_digest(data) for key, data in files.items()}
        assert {tuple(k.split("/")): v for k, v in local.lineage.input_digests.items()} == page_digests
        for product, lots in (("reference", local.reference), ("test", local.test)):
            for lot, result in lots.items():
                row = dvalues[(dvalues["product"] == product) & (dvalues["lot"] == lot)].iloc[0]
                assert row["particles"] == result.psd.n
                assert row["D50 (µm)"] == pytest.approx(result.psd.d50_um)


def _page_digests(at: AppTest) -> dict[tuple[str, str, str], str]:
    """``(product, lot, image) → digest`` from the page's table of input images (Lineage tab)."""
    frame = next(d.value for d in at.dataframe if {"product", "lot", "name", "digest"} <= set(d.value.columns))
    return {(r.product, r.lot, r.name): r.digest for r in frame.itertuples()}


@pytest.mark.slow
def test_learned_segmenter_choice_runs_the_same_analysis(
    lots_root: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidebar offers the production learned segmenter; the page's comparison is the same `compare` with it."""
    import mlflow
    from mlflow_store import empty_store

    from semqa.particles.learned import load_segmenter
    from semqa.registry.store import SEGMENTER_MODEL_NAME
    from training.segmenter.config import build_config
    from training.segmenter.train import train_segmenter

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty_store(tmp_path_factory, tmp_path / 'store')}")
    monkeypatch.setenv("SEMQA_HOME", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert at.radio(key="segmenter").options == ["classic"]  # nothing registered yet

    config = build_config({"model": {"num_feat": 4, "depth": 2}, "steps": 60, "batch_size": 4, "synthetic_scenes": 2,
                           "scene_size_px": 128, "heldout_scenes": 0, "num_threads": 1})
    version = train_segmenter(config).model_version
    mlflow.MlflowClient().set_registered_model_alias(SEGMENTER_MODEL_NAME, "production", version)
    # The page lists versions through a 30 s cache (promotions show up within 30 s): start afresh.
    from dashboard.runner import registered_versions

    registered_versions.clear()

    pick = lambda folder: {"lot1": _files(folder)["lot1"][:2]}  # noqa: E731
    reference, test = pick(lots_root / "rld" / "lr"), pick(lots_root / "generic" / "lr")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    learned = next(o for o in at.radio(key="segmenter").options if o.startswith("learned"))
    at.radio(key="segmenter").set_value(learned).run()
    _upload(at, "reference", reference)
    _upload(at, "test", test)
    at.run()
    at.button(key="compare").click().run()
    assert not at.exception

    decode = lambda lots: {lot: [read_image_bytes(d, n) for n, d in files] for lot, files in lots.items()}  # noqa: E731
    expected = compare(decode(reference), decode(test), AnalysisConfig(n_bootstrap=N_BOOTSTRAP), segmenter=load_segmenter("learned"))
    dvalues = at.dataframe[1].value
    row = dvalues[(dvalues["product"] == "test") & (dvalues["lot"] == "lot1")].iloc[0]
    assert row["particles"] == expected.test["lot1"].psd.n
    d50 = expected.test["lot1"].psd.d50_um  # None where too few particles for a D50: the page shows NaN
    assert np.isnan(row["D50 (µm)"]) if d50 is None else row["D50 (µm)"] == pytest.approx(d50)
    lineage = next(df.value for df in at.dataframe if "item" in df.value.columns).set_index("item")["value"]
    assert lineage["segmenter"].startswith(f"{SEGMENTER_MODEL_NAME} version {version} @production")
