"""Masked credentials, the store's one location, tamper-evident result records (issue 10).

Results here are real ``semqa analyze`` / ``compare`` runs on a synthetic scene, recorded in a
real (temporary) SQLite MLflow store; the tampering is done on the written JSON files as a
user would, by editing them.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import semqa
from mlflow_store import fresh_store, migrated_template
from semqa.cli import main
from semqa.io.images import write_image
from semqa.registry.records import canonical_json, content_digest, differences
from semqa.registry.store import CredentialFilter, mask_credentials, semqa_home, store_dir, tracking_uri
from semqa.synth.scenes import SynthConfig, render_pair

SECRET = "s3cr3t-Pa55"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    return migrated_template(tmp_path_factory)


@pytest.fixture
def store(template_db, tmp_path, monkeypatch) -> str:
    """A fresh copy of a migrated SQLite store, named by MLFLOW_TRACKING_URI."""
    return fresh_store(template_db, tmp_path / "work", monkeypatch)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """One small HR scene as a 16-bit TIFF with its pixel size."""
    folder = tmp_path_factory.mktemp("records-scene")
    config = SynthConfig(size_px=256)
    hr, _, _ = render_pair(config, np.random.default_rng(3))
    write_image(folder / "hr.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16)
    return folder / "hr.tif"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"http://admin:{SECRET}@mlflow.example:5000", "http://admin:***@mlflow.example:5000"),
        (f"postgresql+psycopg2://mlflow:{SECRET}@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
        (f"https://u:p@{SECRET}@host/x", "https://u:***@host/x"),  # an unescaped '@' in the password
        (f"postgresql://db/mlflow?sslmode=require&password={SECRET}", "postgresql://db/mlflow?sslmode=require&password=***"),
        ("sqlite:////home/qa/mlruns/mlflow.db", "sqlite:////home/qa/mlruns/mlflow.db"),
        ("http://mlflow.example:5000", "http://mlflow.example:5000"),
    ],
)
def test_credentials_are_masked_in_any_uri(uri: str, shown: str) -> None:
    assert mask_credentials(uri) == shown
    assert mask_credentials(f"API request to {uri} failed: {uri}") == f"API request to {shown} failed: {shown}"
    assert SECRET not in mask_credentials(uri)


def test_log_records_and_their_tracebacks_are_masked() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("semqa.test-records")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(CredentialFilter())
    try:
        try:
            raise ConnectionError(f"cannot reach http://admin:{SECRET}@host:5000")
        except ConnectionError:
            logger.exception("store %s failed", f"postgresql://u:{SECRET}@db/x")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "postgresql://u:***@db/x" in text and "http://admin:***@host:5000" in text and "ConnectionError" in text


def test_store_errors_and_lineage_never_show_the_password(scene, store, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "r.json"
    assert main(["analyze", str(scene), "--json", str(out)]) == 0
    capsys.readouterr()
    # A team server that is down, named with its password: one masked line, exit 1 or 2.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://admin:{SECRET}@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    for argv in (["models", "list"], ["lineage", str(out)], ["lineage", str(out), "--json"], ["analyze", str(scene)]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code in (1, 2), (argv, captured)
        assert SECRET not in captured.out + captured.err, argv
        assert "admin:***@127.0.0.1:9" in captured.out + captured.err, argv
    assert "result not recorded" in captured.err


# --- the store -------------------------------------------------------------------------------


def test_the_store_does_not_depend_on_the_current_folder(scene, tmp_path, monkeypatch, capsys) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SEMQA_HOME", str(tmp_path / "home"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    db = tmp_path / "home" / "mlruns" / "mlflow.db"
    assert f"store: sqlite:///{db}" in out and "no registered versions" in out
    # A recorded analysis keeps its run and artifacts in the store folder too, not in the cwd.
    assert main(["analyze", str(scene)]) == 0
    assert f"in sqlite:///{db}" in capsys.readouterr().out
    assert db.is_file() and list(elsewhere.iterdir()) == []
    experiment = mlflow.MlflowClient(f"sqlite:///{db}").get_experiment_by_name("semqa-results")
    assert experiment.artifact_location == (db.parent / "artifacts" / "semqa-results").as_uri()
    assert len(list((db.parent / "artifacts" / "semqa-results").glob("*/artifacts/result/result.json"))) == 1
    # MLFLOW_TRACKING_URI overrides, and it is printed masked.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    assert tracking_uri() == f"sqlite:///{tmp_path / 'other.db'}"
    # Without SEMQA_HOME the default is the source checkout semqa runs from.
    monkeypatch.delenv("SEMQA_HOME")
    checkout = Path(semqa.__file__).resolve().parents[1]
    assert semqa_home() == checkout and store_dir() == checkout / "mlruns"


# --- tamper-evident results ------------------------------------------------------------------


def test_canonical_digest_ignores_layout_and_the_pointer_only() -> None:
    doc = {"b": [1, 2.5, {"z": None}], "a": "µm", "lineage": {"created_at": "t", "record": {"run_id": "r"}}}
    same = json.loads(json.dumps(doc, indent=4, ensure_ascii=True))
    same["lineage"]["record"] = None
    assert content_digest(doc) == content_digest(same)
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    edited = json.loads(json.dumps(doc))
    edited["b"][1] = 2.6
    assert content_digest(edited) != content_digest(doc)
    assert differences(doc, edited) == ["b[1] changed (2.5 → 2.6)"]


def test_intact_analysis_and_comparison_pass_their_record(scene, store, tmp_path, capsys) -> None:
    out = tmp_path / "r.json"
    assert main(["analyze", str(scene), "--json", str(out)]) == 0
    assert "recorded: run" in capsys.readouterr().out
    record = json.loads(out.read_text())["lineage"]["record"]
    assert record["store"] == store and record["digest"].startswith("sha256:")
    assert main(["lineage", str(out), "--json"]) == 0
    links = {link["step"]: link for link in json.loads(capsys.readouterr().out)["links"]}
    assert links["record"]["ok"] and links["record"]["details"]["run_id"] == record["run_id"]

    import mlflow

    run = mlflow.MlflowClient().get_run(record["run_id"])
    assert run.data.tags["semqa.result_digest"] == record["digest"] and run.data.tags["semqa.n_inputs"] == "1"
    assert run.data.tags["semqa.result_kind"] == "analysis"

    # compare: two products of one lot each, the same image in both.
    for product in ("ref", "test"):
        (tmp_path / product / "lot1").mkdir(parents=True)
        (tmp_path / product / "lot1" / "a.tif").write_bytes(scene.read_bytes())
    cmp = tmp_path / "cmp.json"
    assert main(["compare", "--reference", str(tmp_path / "ref"), "--test", str(tmp_path / "test"), "--json", str(cmp)]) == 0
    assert main(["lineage", str(cmp)]) == 0
    assert "Chain intact" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tamper", "step", "names"),
    [
        (lambda d: d["psd"].update(d50_um=d["psd"]["d50_um"] * 1.1), "record", "psd.d50_um changed"),
        (lambda d: d["particles"][0].update(ecd_um=99.0), "record", "particles[0].ecd_um changed"),
        (lambda d: d["lineage"].pop("created_at"), "result", "lineage.created_at removed"),
        (lambda d: d.update(sr=True), "model", "sr: true but names no generator"),
        (lambda d: d["lineage"].pop("record"), "record", "names no record"),
        (lambda d: d["lineage"]["record"].update(run_id="0" * 32), "record", "not found in the store"),
    ],
)
def test_an_edited_result_breaks_the_chain(scene, store, tmp_path, capsys, tamper, step, names) -> None:
    out = tmp_path / "r.json"
    assert main(["analyze", str(scene), "--json", str(out)]) == 0
    _edit(out, tamper)
    capsys.readouterr()
    assert main(["lineage", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"[BROKEN] {step}" in captured.out and names in captured.out
    assert captured.err.startswith("semqa: lineage of result") and len(captured.err.splitlines()) == 1


def test_a_service_response_with_overlays_keeps_its_chain(scene, store, tmp_path, capsys) -> None:
    """The service puts overlay PNGs beside the recorded result in its JSON; the saved response still traces.

    The overlays are pictures of the result, not part of it: the record vouches for the result's
    fields, and the lineage says the overlays are not covered. Any edit of a result field still breaks it.
    """
    from semqa.analysis import AnalysisConfig, analyze
    from semqa.io.images import read_image
    from semqa.particles.overlay import overlay_collector
    from semqa.registry.records import record_result
    from service.service import _with_overlays

    hook, pngs = overlay_collector()
    result = record_result(analyze([read_image(scene)], AnalysisConfig(n_bootstrap=0), hook=hook))
    out = tmp_path / "served.json"
    out.write_bytes(_with_overlays(result, pngs).body)
    assert set(json.loads(out.read_text())["overlays"]) == {"hr.tif"}
    assert main(["lineage", str(out), "--json"]) == 0
    links = {link["step"]: link for link in json.loads(capsys.readouterr().out)["links"]}
    assert links["record"]["ok"] and "1 overlay image(s) beside the result are not covered" in links["record"]["summary"]
    _edit(out, lambda d: d["psd"].update(d50_um=d["psd"]["d50_um"] * 1.1))
    assert main(["lineage", str(out)]) == 1
    assert "psd.d50_um changed" in capsys.readouterr().out


# --- small defects ---------------------------------------------------------------------------


def test_lineage_refuses_deep_json_fifos_and_huge_files(tmp_path, capsys) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:  # sparse: no disk used
        fh.truncate(300 * 2**20)
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"lineage": {}, "x": json.loads("[" * 200 + "]" * 200)}))
    for path, says in ((deep, "nested deeper"), (fifo, "not a regular file"), (huge, "larger than any result"), (nested, "nested deeper")):
        assert main(["lineage", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert says in err and len(err.splitlines()) == 1, err


def test_max_pixels_zero_and_validate_pixel_size_zero_are_refused(scene, tmp_path, capsys) -> None:
    for argv in (["analyze", str(scene), "--max-pixels", "0"], ["analyze", str(scene), "--max-pixels", "-5"]):
        assert main(argv) == 2
        assert "--max-pixels must be at least 1" in capsys.readouterr().err
    lots = tmp_path / "lots" / "lot1"
    lots.mkdir(parents=True)
    (lots / "a.tif").write_bytes(scene.read_bytes())
    assert main(["validate", str(tmp_path / "lots"), "--lots", "--pixel-size", "0", "--report", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "pixel size must be a positive number" in err and "readable" not in err


# --- the embedded store's fast path (issue 15) -----------------------------------------------


def test_the_sqlite_writer_targets_the_installed_mlflow_schema() -> None:
    """semqa.registry.sqlite_record writes MLflow's tables directly: only for the schema it was checked against."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    from semqa.registry.sqlite_record import SCHEMA_REVISION

    assert _get_latest_schema_revision() == SCHEMA_REVISION, "MLflow's schema moved on: re-check sqlite_record against it"


def test_a_record_written_without_mlflow_reads_back_as_mlflows_own(store, tmp_path) -> None:
    import mlflow

    from semqa.registry.records import RESULTS_EXPERIMENT, record_with_mlflow
    from semqa.registry.sqlite_record import write_record

    db = Path(store.removeprefix("sqlite:///"))
    tags = {"semqa.result_digest": "sha256:" + "ab" * 32, "semqa.result_kind": "analysis", "semqa.n_inputs": "1"}
    text = '{"a":"µm","b":[1,2.5]}'
    # Before the experiment exists the writer declines (MLflow creates it, with semqa's artifact folder).
    assert write_record(db, RESULTS_EXPERIMENT, "analysis-x", tags, "result/result.json", text) is None
    by_mlflow = record_with_mlflow("analysis-x", tags, "result/result.json", text)
    direct = write_record(db, RESULTS_EXPERIMENT, "analysis-x", tags, "result/result.json", text)
    assert direct is not None and direct != by_mlflow
    client = mlflow.MlflowClient(store)
    a, b = client.get_run(by_mlflow), client.get_run(direct)
    info_a, info_b = dict(a.info), dict(b.info)
    for key in ("run_id", "run_uuid", "start_time", "end_time", "artifact_uri"):
        info_a.pop(key, None), info_b.pop(key, None)
    assert info_a == info_b and info_b["status"] == "FINISHED" and info_b["lifecycle_stage"] == "active"
    assert b.info.artifact_uri == a.info.artifact_uri.replace(by_mlflow, direct)
    assert b.info.end_time >= b.info.start_time > 0
    assert a.data.tags == b.data.tags and dict(a.data.params) == dict(b.data.params) == {}
    assert [f.path for f in client.list_artifacts(direct, "result")] == ["result/result.json"]
    copy = mlflow.artifacts.download_artifacts(run_id=direct, artifact_path="result/result.json", dst_path=str(tmp_path / "dl"))
    assert Path(copy).read_text(encoding="utf-8") == text
    found = client.search_runs([a.info.experiment_id], filter_string=f"tags.`semqa.result_digest` = '{tags['semqa.result_digest']}'")
    assert {r.info.run_id for r in found} == {by_mlflow, direct}


def test_analyze_on_the_embedded_store_never_imports_mlflow(scene, store, tmp_path) -> None:
    """The second and later records of a store are written without MLflow, scipy.stats or pandas (start-up time)."""
    import subprocess
    import sys

    import mlflow

    from semqa.registry.records import RESULTS_EXPERIMENT

    outs = [tmp_path / "first.json", tmp_path / "second.json"]
    # The first record creates the results experiment through MLflow's client; it runs in this
    # process (which has MLflow loaded anyway): only the later record's imports are the property.
    assert mlflow.MlflowClient().get_experiment_by_name(RESULTS_EXPERIMENT) is None
    assert main(["analyze", str(scene), "--json", str(outs[0])]) == 0
    assert mlflow.MlflowClient().get_experiment_by_name(RESULTS_EXPERIMENT) is not None
    code = (
        "import sys; from semqa.cli import main; rc = main(sys.argv[1:]); "
        "print('IMPORTED', [m for m in ('mlflow', 'sqlalchemy', 'scipy.stats', 'pandas', 'torch') if m in sys.modules]); "
        "sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(semqa.__file__).resolve().parents[1])}  # this checkout's semqa
    second = subprocess.run([sys.executable, "-c", code, "analyze", str(scene), "--json", str(outs[1])],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    assert second.returncode == 0, second.stderr
    assert "IMPORTED []" in second.stdout
    for out in outs:
        assert main(["lineage", str(out)]) == 0
