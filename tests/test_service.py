"""The BentoML service on loopback: every route, results equal to the CLI's, bad input, auth.

A tiny real generator and a tiny learned segmenter are registered in a temporary MLflow store
with the registration code training uses, promoted to ``production``, and served by
``bentoml.serve`` on a free port.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import tifffile
import torch

from mlflow_store import empty_store
from semqa.sr.archs import GeneratorConfig, build_generator
from semqa.cli import main as cli
from semqa.io.digests import bytes_digest, file_digest
from semqa.io.images import encode_image, read_image, read_image_bytes, to_uint, write_image
from semqa.particles.segmentation import segment
from semqa.sr.inference import load_upscaler
from semqa.registry.store import MODEL_NAME, SEGMENTER_MODEL_NAME
from semqa.synth.scenes import SynthConfig, render_pair
from service.launch import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOKEN = "test-token-5f2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_PIXELS = 400_000
MAX_UPLOAD = 2_000_000
LR_PX = 0.4  # µm per LR pixel (SynthConfig default HR 0.1 µm × scale 4)
#: Longest wait for a started server's /readyz: well inside the module's pytest timeout (600 s),
#: so a server that never comes up fails the fixture with its log instead of hanging.
READY_TIMEOUT_S = 240
#: Largest difference, in 16-bit grey levels, between batched and one-by-one inference of an
#: image: float rounding moves a value across at most one rounding step (see the test); 4 steps
#: (6e-5 of full scale) leave margin and are still 64× finer than one 8-bit grey level.
BATCH_TOLERANCE_LEVELS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _register_tiny_generator(tmp: Path) -> str:
    """Register a tiny generator as version 1 @production; returns its run id.

    Its learned branch is scaled down so that the output is the nearest-neighbour upsampled
    input plus a small learned correction: images keep their particles, and a wrong tile or
    batch assembly would still show.
    """
    from training.tracking import register_generator

    torch.manual_seed(0)
    config = GeneratorConfig(arch="srvgg", num_feat=8, num_conv=2, scale=2)
    generator = build_generator(config)
    with torch.no_grad():
        for p in generator.parameters():
            p.mul_(0.3)
    mlflow.set_experiment("service-test")
    with mlflow.start_run() as run:
        version, _ = register_generator(
            generator, config, run_id=run.info.run_id, step=1, metrics=None,
            dataset_digest="sha256:test", validation_report="none",
        )
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, "production", version)
    return run.info.run_id


def _register_tiny_segmenter() -> None:
    """Train a tiny learned segmenter (a few steps, the real training code) as version 1 @production."""
    from training.segmenter.config import build_config
    from training.segmenter.train import train_segmenter

    config = build_config({"model": {"num_feat": 4, "depth": 2}, "steps": 4, "batch_size": 2, "synthetic_scenes": 1,
                           "scene_size_px": 128, "heldout_scenes": 0, "num_threads": 1})
    result = train_segmenter(config)
    mlflow.MlflowClient().set_registered_model_alias(SEGMENTER_MODEL_NAME, "production", result.model_version)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A registry with a production generator, the service's settings, LR test images."""
    root = tmp_path_factory.mktemp("service")
    mp = pytest.MonkeyPatch()
    db = empty_store(tmp_path_factory, root / "mlruns")
    uri = f"sqlite:///{db}"
    mp.chdir(root)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("BENTOML_HOME", str(root / "bentoml"))
    mp.setenv("BENTOML_DO_NOT_TRACK", "true")
    mp.setenv("SEMQA_API_TOKEN", TOKEN)
    mp.setenv("SEMQA_SERVICE_MAX_PIXELS", str(MAX_PIXELS))
    mp.setenv("SEMQA_SERVICE_MAX_UPLOAD_BYTES", str(MAX_UPLOAD))
    mp.delenv("SEMQA_MODEL_URI", raising=False)
    mp.delenv("SEMQA_API_TOKEN_FILE", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    run_id = _register_tiny_generator(root)
    # Training checkpoints and cached sets of this store under the test's folder, not the checkout.
    mp.setenv("SEMQA_HOME", str(root))
    _register_tiny_segmenter()
    # LR micrographs (96×96 at 0.4 µm) as 16-bit TIFFs with their pixel size, in two products.
    images = root / "images"
    for product, seed0 in (("ref", 10), ("gen", 20)):
        for lot in ("lot1", "lot2"):
            for k in range(2):
                _, lr, _ = render_pair(SynthConfig(size_px=384), np.random.default_rng(seed0 + 3 * k + (lot == "lot2")))
                write_image(images / product / lot / f"{product}-{lot}-{k}.tif", lr, pixel_size_um=LR_PX, bit_depth=16)
    yield {"root": root, "run_id": run_id, "images": images}
    mp.undo()


@pytest.fixture(scope="module")
def server(env):
    """``semqa service serve`` on 127.0.0.1 in its own process group, stopped (bounded) at the end."""
    with running_service(_free_port(), log_path=env["root"] / "service.log", ready_timeout_s=READY_TIMEOUT_S) as url:
        yield url


def _tif(env, product="ref", lot="lot1", k=0) -> Path:
    return env["images"] / product / lot / f"{product}-{lot}-{k}.tif"


def _without_times(data: dict) -> dict:
    """A result without what differs between a server and a CLI run of the same analysis.

    That is the creation time, the input paths (the service reads uploads, never paths), the
    record (each run records its result in a run of its own) and the code version (other
    commits may land while the server runs; it must be present).
    """
    data = json.loads(json.dumps(data))
    for node in [data, *data.get("reference", {}).values(), *data.get("test", {}).values()]:
        lineage = node["lineage"]
        lineage.pop("created_at")
        lineage.pop("record")
        lineage.pop("input_paths", None)
        assert lineage.pop("code_version")
    return data


# --- routes ---------------------------------------------------------------------------------


def test_model_info_names_the_production_version(env, server):
    info = httpx.get(f"{server}/v1/model_info", headers=AUTH, timeout=30).json()
    mv = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "production")
    model = info["model"]
    assert (model["name"], model["version"], model["alias"]) == (MODEL_NAME, "1", "production")
    assert model["run_id"] == env["run_id"] == mv.run_id
    assert model["weights_digest"] == mv.tags["weights_digest"]
    assert model["scale"] == 2
    assert info["source"] == "registry" and info["device"] == "cpu" and info["batching"] is True


def test_super_resolve_16bit_tiff_and_png_equal_local_inference(env, server):
    local = load_upscaler()
    path = _tif(env)
    mg = read_image(path)
    expected = local.upscale(mg.image)
    r = httpx.post(f"{server}/v1/super_resolve", headers=AUTH, files={"image": (path.name, path.read_bytes())}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    assert r.headers["x-semqa-model-version"] == "1"
    with tifffile.TiffFile(io.BytesIO(r.content)) as tif:
        assert tif.pages[0].dtype == np.uint16
    out = read_image_bytes(r.content, "sr.tif")
    assert out.bit_depth == 16 and out.image.shape == (192, 192)
    assert out.pixel_size_um == pytest.approx(LR_PX / 2)
    np.testing.assert_array_equal(to_uint(out.image, 16), to_uint(expected, 16))

    png8 = encode_image(mg.image, "png")
    r = httpx.post(f"{server}/v1/super_resolve", headers=AUTH, files={"image": ("a.png", png8)}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = read_image_bytes(r.content, "a.png")
    assert got.bit_depth == 8
    np.testing.assert_array_equal(to_uint(got.image), to_uint(local.upscale(read_image_bytes(png8, "a").image)))


def test_concurrent_same_size_requests_are_batched_and_each_correct(env, server):
    local = load_upscaler()
    paths = [_tif(env, p, lot, k) for p in ("ref", "gen") for lot in ("lot1", "lot2") for k in (0, 1)]

    def call(path: Path) -> np.ndarray:
        r = httpx.post(f"{server}/v1/super_resolve", headers=AUTH, files={"image": (path.name, path.read_bytes())},
                       data={"format": "tiff"}, timeout=120)
        assert r.status_code == 200, r.text
        return read_image_bytes(r.content, path.name).image

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, paths))
    for path, got in zip(paths, results):
        expected = local.upscale(read_image(path).image)
        # Batched float32 inference sums each convolution in another order than a batch of one:
        # results differ by float rounding (~1e-6 relative), i.e. a pixel now and then lands on
        # the other side of a 16-bit rounding step. Anything beyond a few steps is a wrong
        # batch assembly, which shows as whole images or tiles off by far more.
        diff = np.abs(to_uint(got, 16).astype(np.int64) - to_uint(expected, 16).astype(np.int64))
        assert diff.max() <= BATCH_TOLERANCE_LEVELS, (path.name, int(diff.max()))
        # What matters downstream: the same particles are found in both.
        got_labels, want_labels = segment(got), segment(expected)
        assert got_labels.max() == want_labels.max() > 0, path.name
        agree = np.mean((got_labels > 0) == (want_labels > 0))
        assert agree >= 0.999, (path.name, agree)
    metrics = httpx.get(f"{server}/metrics", headers=AUTH, timeout=30).text
    sizes = [line for line in metrics.splitlines() if line.startswith("bentoml_service_adaptive_batch_size_count")]
    assert sizes, "adaptive batch size histogram missing from /metrics"


def test_analyze_equals_the_cli(env, server, tmp_path):
    paths = [_tif(env, "ref", "lot1", 0), _tif(env, "ref", "lot1", 1)]
    out = tmp_path / "cli.json"
    assert cli(["analyze", *map(str, paths), "--sr", "--json", str(out)]) == 0
    files = [("images", (p.name, p.read_bytes())) for p in paths]
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files=files, data={"sr": "true"}, timeout=300)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["lineage"]["model"]["version"] == "1" and got["sr"] is True
    assert got["lineage"]["input_digests"] == {p.name: read_image(p).digest for p in paths}
    assert _without_times(got) == _without_times(json.loads(out.read_text()))
    assert got["psd"]["n"] > 0
    # The service recorded its result in the store it uses: the file an HTTP client keeps traces back.
    served = tmp_path / "served.json"
    served.write_text(r.text)
    assert got["lineage"]["record"]["store"] == os.environ["MLFLOW_TRACKING_URI"]
    assert _record_link(served, env).ok
    got["psd"]["d50_um"] *= 1.1
    served.write_text(json.dumps(got))
    link = _record_link(served, env)
    assert not link.ok and "psd.d50_um changed" in link.summary


def test_analyze_with_the_learned_segmenter_equals_the_cli(env, server, tmp_path):
    path = _tif(env, "gen", "lot1", 0)
    mv = mlflow.MlflowClient().get_model_version_by_alias(SEGMENTER_MODEL_NAME, "production")
    out = tmp_path / "cli.json"
    assert cli(["analyze", str(path), "--segmenter", "learned", "--json", str(out)]) == 0
    served = {}
    for spec in ("learned", f"models:/{SEGMENTER_MODEL_NAME}/{mv.version}"):
        r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": (path.name, path.read_bytes())},
                       data={"segmenter": spec}, timeout=120)
        assert r.status_code == 200, r.text
        served[spec] = r.json()
        segmenter = served[spec]["lineage"]["segmenter"]
        assert segmenter["kind"] == "learned" and segmenter["version"] == str(mv.version)
        assert segmenter["weights_digest"] == mv.tags["weights_digest"] and segmenter["run_id"] == mv.run_id
    assert _without_times(served["learned"]) == _without_times(json.loads(out.read_text()))
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": (path.name, path.read_bytes())},
                   data={"segmenter": f"models:/{SEGMENTER_MODEL_NAME}/99"}, timeout=60)
    assert r.status_code == 400 and "not found" in r.json()["error"], r.text


def _record_link(path: Path, env):
    """The ``record`` link of a result's lineage (this test registry's training run has no validation report)."""
    from semqa.registry.lineage import LineageBroken, trace_result

    try:
        report = trace_result(path, [env["images"]])
    except LineageBroken as exc:
        report = exc.report
    return next(link for link in report.links if link.step == "record")


def test_a_model_version_not_served_is_409_on_every_route(env, server):
    path = _tif(env)
    # analyze asks for SR: the model version only matters where the generator runs (SR is off unless asked).
    for route, files in (("super_resolve", {"image": (path.name, path.read_bytes())}),
                         ("analyze", {"images": (path.name, path.read_bytes())})):
        r = httpx.post(f"{server}/v1/{route}", headers=AUTH, files=files, data={"model_version": "7", "sr": "true"}, timeout=60)
        assert r.status_code == 409 and "serves version 1" in r.json()["error"], (route, r.text)
        r = httpx.post(f"{server}/v1/{route}", headers=AUTH, files=files, data={"model_version": "1", "sr": "true"}, timeout=120)
        assert r.status_code == 200, (route, r.text)


def test_analyze_without_sr_and_with_pixel_size_given(env, server, tmp_path):
    from semqa.analysis import AnalysisConfig, analyze

    path = _tif(env, "gen", "lot2", 1)
    mg = read_image(path)
    png = encode_image(mg.image, "png", bit_depth=16)
    config = AnalysisConfig(n_bootstrap=50)
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": ("x.png", png)},
                   data={"sr": "false", "pixel_size_um": str(LR_PX), "config": config.model_dump_json()}, timeout=120)
    assert r.status_code == 200, r.text
    expected = analyze([read_image_bytes(png, "x.png", pixel_size_um=LR_PX)], config=config)
    got = r.json()
    assert got["sr"] is False and got["lineage"]["model"] is None and got["config"]["n_bootstrap"] == 50
    assert _without_times(got) == _without_times(json.loads(expected.model_dump_json()))


def test_analyze_finds_the_data_bar_takes_a_roi_and_returns_overlays(env, server, tmp_path):
    import base64

    from semqa.analysis import AnalysisConfig, analyze
    from semqa.synth.databar import add_databar

    mg = read_image(_tif(env, "gen", "lot2", 1))
    framed, truth = add_databar(mg.image, "bottom-overlay", np.random.default_rng(0), rows=16, pixel_size_um=LR_PX)
    png = encode_image(framed, "png")
    config = AnalysisConfig(n_bootstrap=0)
    data = {"sr": "false", "pixel_size_um": str(LR_PX), "config": config.model_dump_json(), "overlays": "true"}
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": ("x.png", png)}, data=data, timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    roi = got["images"][0]["roi"]
    assert (roi["source"], roi["x"], roi["y"], roi["width"], roi["height"]) == ("auto-databar", *truth)
    expected = analyze([read_image_bytes(png, "x.png", pixel_size_um=LR_PX)], config=config)
    assert got["psd"]["n"] == expected.psd.n
    overlay = read_image_bytes(base64.b64decode(got["overlays"]["x.png"]), "o.png")
    assert overlay.image.shape == framed.shape
    # The response saved as it came, overlays beside the recorded result, still traces to its record.
    served = tmp_path / "served.json"
    served.write_text(r.text)
    assert _record_link(served, env).ok
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": ("x.png", png)},
                   data={**data, "roi": "0,0,40,30", "overlays": "false"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["images"][0]["roi"]["source"] == "roi-flag" and "overlays" not in r.json()
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": ("x.png", png)},
                   data={**data, "roi": "0,0,4000,30"}, timeout=120)
    assert r.status_code == 400 and "reaches outside" in r.json()["error"]


def test_compare_equals_the_cli_through_the_typed_client(env, server, tmp_path):
    from service.client import SemqaClient

    out = tmp_path / "cli.json"
    images = env["images"]
    assert cli(["compare", "--reference", str(images / "ref"), "--test", str(images / "gen"), "--sr",
                "--json", str(out)]) == 0
    ref = {lot: [(p.name, p.read_bytes()) for p in sorted((images / "ref" / lot).glob("*.tif"))] for lot in ("lot1", "lot2")}
    test = {lot: [(p.name, p.read_bytes()) for p in sorted((images / "gen" / lot).glob("*.tif"))] for lot in ("lot1", "lot2")}
    with SemqaClient(server, timeout=300) as client:
        assert client.health()
        assert client.model_info().model.version == "1"
        seen = []
        report = client.compare(ref, test, sr=True, progress=lambda d, t: seen.append((d, t)))
        assert seen == [(8, 8)]
        assert report.verdict in ("equivalent", "not_equivalent", "inconclusive")
        assert report.lineage.model.version == "1"
        assert _without_times(json.loads(report.model_dump_json())) == _without_times(json.loads(out.read_text()))
        # a version other than the one served is refused, not silently replaced
        with pytest.raises(Exception, match="serves version 1") as info:
            client.compare(ref, test, model_version="7")
        assert info.value.http_status == 409


def test_original_files_give_the_in_process_digests_and_pixel_sizes(env, server, tmp_path):
    """Files sent byte for byte: lineage digests are the files' own, pixel sizes resolve as read_image's.

    The reference's lot2 holds a PNG whose pixel size only a sidecar gives, and a TIFF beside
    a sidecar that disagrees with its metadata (the metadata wins, in-process and served).
    """
    from semqa.analysis import AnalysisConfig, analyze, compare
    from service.client import ImageFile, SemqaClient

    config = AnalysisConfig(n_bootstrap=50)
    lot2 = tmp_path / "ref" / "lot2"
    png = write_image(lot2 / "sidecar.png", read_image(_tif(env, "ref", "lot2", 0)).image, pixel_size_um=LR_PX)
    tif = lot2 / "meta.tif"
    tif.write_bytes(_tif(env, "ref", "lot2", 1).read_bytes())
    tif.with_suffix(".json").write_text(json.dumps({"pixel_size_um": 9.9}))
    paths = {
        "reference": {"lot1": [_tif(env, "ref", "lot1", k) for k in (0, 1)], "lot2": [png, tif]},
        "test": {lot: [_tif(env, "gen", lot, k) for k in (0, 1)] for lot in ("lot1", "lot2")},
    }

    def sidecar(path: Path) -> float | None:  # what an auditor's folder holds beside the file
        side = path.with_suffix(".json")
        return json.loads(side.read_text())["pixel_size_um"] if side.is_file() else None

    files = {product: {lot: [ImageFile(p.name, p.read_bytes(), sidecar(p)) for p in ps] for lot, ps in lots.items()}
             for product, lots in paths.items()}
    expected = compare(*({lot: [read_image(p) for p in ps] for lot, ps in paths[k].items()} for k in ("reference", "test")),
                       config=config)
    with SemqaClient(server, timeout=300) as client:
        report = client.compare(files["reference"], files["test"], sr=False, config=config)

        digests = {f"{product}/{lot}/{p.name}": file_digest(p)
                   for product, lots in paths.items() for lot, ps in lots.items() for p in ps}
        assert report.lineage.input_digests == expected.lineage.input_digests == digests
        assert [im.pixel_size_um for im in report.reference["lot2"].images] == [LR_PX, LR_PX]
        # Where the sizes came from differs by design: in-process names the sidecar (and notes the
        # one the TIFF's own metadata overrule); the service names the form field that carried it.
        got_lot2, local_lot2 = report.reference["lot2"].images, expected.reference["lot2"].images
        assert [im.pixel_size_source for im in got_lot2] == ["form:pixel_sizes_um", "tiff:ImageDescription:pixel_size_um"]
        assert [im.pixel_size_source for im in local_lot2] == ["sidecar:sidecar.json:pixel_size_um", "tiff:ImageDescription:pixel_size_um"]
        assert "sidecar:meta.json:pixel_size_um" in local_lot2[1].pixel_size_note and got_lot2[1].pixel_size_note is None
        for im in (*got_lot2, *local_lot2):
            im.pixel_size_source, im.pixel_size_note = "", None
        assert _without_times(json.loads(report.model_dump_json())) == _without_times(json.loads(expected.model_dump_json()))

        # The pixel size a user enters overrides the file's (as read_image's argument does).
        unsized = encode_image(read_image(_tif(env, "gen", "lot1", 0)).image, "png")
        got = client.analyze([ImageFile("u.png", unsized, 9.9), ImageFile(tif.name, tif.read_bytes(), 9.9)],
                             sr=False, pixel_size_um=0.3, config=config)
        local = analyze([read_image_bytes(unsized, "u.png", pixel_size_um=0.3), read_image(tif, pixel_size_um=0.3)], config=config)
        assert got.lineage.input_digests == local.lineage.input_digests == {
            "u.png": bytes_digest(unsized), "meta.tif": file_digest(tif)}
        assert [im.pixel_size_um for im in got.images] == [0.3, 0.3]
        assert _without_times(json.loads(got.model_dump_json())) == _without_times(json.loads(local.model_dump_json()))

        # A decoded micrograph has no file: it travels re-encoded, and that TIFF's digest is recorded.
        mg = read_image(png)
        reencoded = encode_image(mg.image, "tiff", bit_depth=16, pixel_size_um=mg.pixel_size_um)
        assert client.analyze([mg], sr=False, config=config).lineage.input_digests == {png.name: bytes_digest(reencoded)}


# --- authentication ---------------------------------------------------------------------------


def test_token_required_everywhere_but_health(server):
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(server + path, timeout=10).status_code == 200
    for method, path in (("GET", "/v1/model_info"), ("POST", "/v1/super_resolve"), ("POST", "/v1/analyze"),
                         ("POST", "/v1/compare"), ("GET", "/metrics"), ("GET", "/"), ("GET", "/docs.json")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.request(method, server + path, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, headers)
            assert "API token" in r.json()["error"]
    assert httpx.get(f"{server}/metrics", headers=AUTH, timeout=10).status_code == 200


# --- bad input --------------------------------------------------------------------------------


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bomb_png() -> bytes:
    """A valid, tiny (well compressed) PNG of 1000×1000 pixels: over MAX_PIXELS once decoded."""
    buf = io.BytesIO()
    from PIL import Image

    Image.new("L", (1000, 1000)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("route", "files", "data", "status", "says"),
    [
        ("super_resolve", {"image": ("a.png", b"\x89PNG\r\n\x1a\ntruncated")}, {}, 400, "corrupt"),
        ("super_resolve", {"image": ("a.txt", b"hello, not an image")}, {}, 415, "not an image"),
        ("super_resolve", {"image": ("z.png", _png_with_size(0, 10))}, {}, 400, "zero-size"),
        ("super_resolve", {"image": ("b.png", _bomb_png())}, {}, 413, "exceeds the limit"),
        ("super_resolve", {"image": ("e.png", b"")}, {}, 400, "empty"),
        ("super_resolve", {}, {"image": "/etc/passwd"}, 400, "must hold files"),
        ("super_resolve", {"image": ("a.png", encode_image(np.zeros((8, 8))))}, {"format": "jpeg"}, 400, "format"),
        ("analyze", {}, {}, 400, "no images"),
        ("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))}, {}, 400, "pixel size unknown; send the form field pixel_size_um"),
        ("compare", {"reference": ("l/a.png", encode_image(np.zeros((16, 16)))), "test": ("l/a.png", encode_image(np.zeros((16, 16))))},
         {}, 400, '{"reference/l/a.png": 0.4}'),
        ("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))}, {"pixel_size_um": "-1"}, 400, "positive"),
        ("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))}, {"pixel_size_um": "abc"}, 400, "number"),
        ("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))},
         {"pixel_size_um": "0.4", "config": '{"ci_level": 3}'}, 400, "ci_level"),
        ("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))},
         {"pixel_size_um": "0.4", "sr": "maybe"}, 400, "true or false"),
        # Every config field is bounded, and unknown keys are refused: the error names the field.
        *(("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))},
           {"pixel_size_um": "0.4", "config": config}, 400, says)
          for config, says in (
              ('{"n_bootstrap": 1000000000}', "n_bootstrap: Input should be less than or equal to 10000"),
              ('{"segmentation": {"particle_diameter_px": 1e7}}', "segmentation.particle_diameter_px: Input should be less"),
              ('{"segmentation": {"bright_window_rel": 1e6}}', "segmentation.bright_window_rel: Input should be less"),
              ('{"segmentation": {"denoise_sigma_rel": 1e6}}', "segmentation.denoise_sigma_rel: Input should be less"),
              ('{"segmentation": {"ring_px_rel": 1e6}}', "segmentation.ring_px_rel: Input should be less"),
              ('{"segmentation": {"denoise_sigma_max_px": 1e6}}', "segmentation.denoise_sigma_max_px"),
              ('{"segmentation": {"background_sigma_rel": 1e9}}', "segmentation.background_sigma_rel"),
              ('{"segmentation": {"neck_ratio": 1e6}}', "segmentation.neck_ratio"),
              ('{"segmentation": {"min_object_px": 1000000000}}', "segmentation.min_object_px"),
              ('{"min_pixels": 1000000000}', "min_pixels"),
              ('{"max_pixels": 100000000000}', "max_pixels"),
              ('{"seed": -1}', "seed"),
              ('{"n_bootstrap": 100, "bootstrap": 5}', "bootstrap: Extra inputs are not permitted"),
              ('{"segmentation": {"ring_px": 3}}', "segmentation.ring_px: Extra inputs are not permitted"),
          )),
        ("compare", {"reference": ("noslash.png", encode_image(np.zeros((16, 16))))},
         {"pixel_size_um": "0.4"}, 400, "<lot>/<image>"),
        ("compare", {"reference": ("../x.png", encode_image(np.zeros((16, 16))))},
         {"pixel_size_um": "0.4"}, 400, "<lot>/<image>"),
        ("compare", {"reference": ("l/a.png", encode_image(np.zeros((16, 16))))},
         {"pixel_size_um": "0.4"}, 400, "no test images"),
        *(("analyze", {"images": ("a.png", encode_image(np.zeros((16, 16))))}, {"pixel_sizes_um": sizes}, 400, says)
          for sizes, says in (
              ("{not json", "JSON object"), ("[0.4]", "µm per pixel, got list"), ('{"b.png": 0.4}', "'b.png', which is not"),
              ('{"a.png": -0.4}', "positive finite"), ('{"a.png": 0}', "positive finite"),
              ('{"a.png": NaN}', "positive finite"), ('{"a.png": Infinity}', "positive finite"),
              ('{"a.png": 1e400}', "positive finite"), ('{"a.png": "0.4"}', "positive finite"),
              ('{"a.png": true}', "positive finite"), ('{"a.png": null}', "positive finite"),
          )),
        ("compare", {"reference": ("l/a.png", encode_image(np.zeros((16, 16)))), "test": ("l/a.png", encode_image(np.zeros((16, 16))))},
         {"pixel_sizes_um": '{"l/a.png": 0.4}'}, 400, "'l/a.png', which is not"),
        ("compare", {"reference": ("l/a.png", encode_image(np.zeros((16, 16)))), "test": ("l/a.png", encode_image(np.zeros((16, 16))))},
         {"pixel_sizes_um": '{"reference/l/a.png": 0.4, "test/l/a.png": 0}'}, 400, "test/l/a.png"),
    ],
)
def test_bad_input_is_a_4xx_json_error(server, route, files, data, status, says):
    r = httpx.post(f"{server}/v1/{route}", headers=AUTH, files=files or None, data=data, timeout=60)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert "--pixel-size" not in r.json()["error"]  # HTTP clients have form fields, not CLI flags


def test_upload_limits_and_the_service_keeps_serving(env, server):
    big = b"\0" * (MAX_UPLOAD + 1)
    r = httpx.post(f"{server}/v1/super_resolve", headers=AUTH, files={"image": ("big.png", big)}, timeout=60)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"x" * 65536

    r = httpx.post(f"{server}/v1/analyze", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"},
                   content=chunks(), timeout=60)
    assert r.status_code == 413
    # a client path is a name only: nothing is opened, the name is its last part
    path = _tif(env)
    r = httpx.post(f"{server}/v1/analyze", headers=AUTH, files={"images": ("../../etc/passwd", path.read_bytes())},
                   data={"sr": "true"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["lineage"]["input_digests"] == {"passwd": read_image(path).digest}
    assert r.json()["lineage"]["model"]["version"] == "1"


# --- packaging --------------------------------------------------------------------------------


def test_bento_build_serves_the_packaged_model_without_mlflow(env, tmp_path, tmp_path_factory, monkeypatch):
    """``semqa service build`` packages the production model; the Bento serves it with no registry."""
    import bentoml

    assert cli(["service", "build"]) == 0
    bento = bentoml.bentos.list()[0]
    models = sorted(str(m.tag) for m in bento.info.all_models)
    assert len(models) == 2 and models[0].startswith(f"{MODEL_NAME}:v1-") and models[1].startswith(f"{SEGMENTER_MODEL_NAME}:v1-")
    stored = bentoml.models.get(models[0])
    mv = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "production")
    assert stored.info.labels["run_id"] == mv.run_id and stored.info.labels["version"] == "1"
    seg_mv = mlflow.MlflowClient().get_model_version_by_alias(SEGMENTER_MODEL_NAME, "production")
    assert bentoml.models.get(models[1]).info.labels["run_id"] == seg_mv.run_id

    # A store without any registered model: the Bento serves its packaged one, and records its results there.
    records_uri = f"sqlite:///{empty_store(tmp_path_factory, tmp_path / 'records')}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", records_uri)
    # Served through the CLI in its own process group: serving a Bento in this process would
    # leave its bento arguments in BentoML's process-wide state for later serves.
    # The store this process uses (fixed by BentoML at its first use): <home>/bentos/<name>/<version>
    serve_env = {**os.environ, "BENTOML_HOME": str(Path(bento.path).parents[2])}
    with running_service(_free_port(), log_path=tmp_path / "bento.log", env=serve_env, bento=str(bento.tag),
                         ready_timeout_s=READY_TIMEOUT_S) as url:
        info = httpx.get(f"{url}/v1/model_info", headers=AUTH, timeout=30).json()
        assert info["source"] == "bento" and info["bento_model"] == models[0]
        assert info["model"]["version"] == "1" and info["model"]["weights_digest"] == mv.tags["weights_digest"]
        path = _tif(env)
        r = httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"images": (path.name, path.read_bytes())},
                       data={"sr": "true"}, timeout=120)  # SR is off unless asked (semqa.analysis.DEFAULT_SR)
        assert r.status_code == 200, r.text
        assert r.json()["lineage"]["model"]["version"] == "1"
        assert r.json()["lineage"]["record"]["store"] == records_uri
        # The packaged segmenter serves `learned` with no registry to resolve it in.
        r = httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"images": (path.name, path.read_bytes())},
                       data={"segmenter": "learned"}, timeout=120)
        assert r.status_code == 200, r.text
        segmenter = r.json()["lineage"]["segmenter"]
        assert segmenter["version"] == str(seg_mv.version) and segmenter["weights_digest"] == seg_mv.tags["weights_digest"]
    assert mlflow.MlflowClient(tracking_uri=records_uri, registry_uri=records_uri).search_registered_models() == []


# --- time budget ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spent_server(env):
    """A second server whose request budget (1 ms) every request's work exceeds, on any machine."""
    serve_env = {**os.environ, "SEMQA_SERVICE_REQUEST_BUDGET_S": "0.001"}
    with running_service(_free_port(), log_path=env["root"] / "spent.log", env=serve_env,
                         ready_timeout_s=READY_TIMEOUT_S) as url:
        yield url


def test_work_past_the_time_budget_is_a_504_json_and_the_service_keeps_serving(env, spent_server):
    path = _tif(env)
    tif = (path.name, path.read_bytes())
    calls = [
        ("super_resolve", {"image": tif}, {}),
        ("analyze", {"images": tif}, {"sr": "true"}),
        ("analyze", {"images": tif}, {"sr": "false"}),
        ("compare", [("reference", (f"l/{path.name}", tif[1])), ("test", (f"l/{path.name}", tif[1]))], {"sr": "false"}),
    ]
    for route, files, data in calls:
        r = httpx.post(f"{spent_server}/v1/{route}", headers=AUTH, files=files, data=data, timeout=120)
        assert r.status_code == 504, (route, r.status_code, r.text)
        assert "time budget of 0.001 s" in r.json()["error"], route
    # Bad input is still told as such (validation comes before the work), and the server answers.
    r = httpx.post(f"{spent_server}/v1/analyze", headers=AUTH, files={"images": tif},
                   data={"config": '{"n_bootstrap": 1000000000}'}, timeout=60)
    assert r.status_code == 400 and "n_bootstrap" in r.json()["error"]
    info = httpx.get(f"{spent_server}/v1/model_info", headers=AUTH, timeout=30)
    assert info.status_code == 200 and info.json()["model"]["version"] == "1"
