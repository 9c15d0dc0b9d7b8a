"""Promotion behind gates, rollback and the audit trail on a real MLflow registry.

Version 1 is a tiny generator really trained (``training.train``) on validated synthetic
pairs; gates are evaluated with the real evaluator (``training.evaluate``) on a fixed
synthetic evaluation set. Where a test needs a gate to pass or fail, it places the limit on
either side of the value actually measured (read back from the evaluation run).
"""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest

from registry_support import LOOSE_GATES, register_generator_run, register_same_weights, trained_template, untrained_generator, use_copy
from semqa.registry import promotion
from semqa.registry.audit import AUDIT_TAG_PREFIX, export_audit, read_audit
from semqa.cli import main
from semqa.evaluation import evaluate_model_uri as gate_evaluator
from semqa.errors import CheckFailed, InputError
from semqa.io.digests import folder_digest
from semqa.registry.promotion import GateConfig, eval_set, promote, rollback
from semqa.registry.store import MODEL_NAME

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return trained_template(tmp_path_factory)


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    use_copy(template, tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "qa-engineer")
    return template


def _promote(version, to, store, force=False, reason="tested", **limits):
    return promote(version, to, reason, force, evaluator=gate_evaluator, eval_data=store["eval"], config=GateConfig(**{**LOOSE_GATES.model_dump(), **limits}))


def _measured(version: str, store) -> dict[str, float]:
    evaluation = promotion.evaluate_version(version, gate_evaluator, eval_set(store["eval"]))
    return evaluation.all_metrics


def _aliases() -> dict[str, str]:
    return promotion.alias_holders(mlflow.MlflowClient())


def test_staging_gate_passes_and_links_an_evaluation_run(store) -> None:
    entry = _promote("1", "staging", store)
    assert _aliases() == {"staging": "1"}
    assert entry.gates_passed and not entry.forced and entry.user == "qa-engineer"
    assert {g.name for g in entry.gates} == {"data_validation", "psnr_gain_over_bicubic"}
    client = mlflow.MlflowClient()
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.tags[promotion.TAG_EVAL_RUN] == entry.eval_run_id
    run = client.get_run(entry.eval_run_id)
    assert run.data.tags[promotion.RUN_TAG_MODEL_VERSION] == "1"
    assert run.data.tags[promotion.RUN_TAG_EVAL_DIGEST] == folder_digest(store["eval"]) == entry.eval_set_digest
    assert {"psnr", "bicubic_psnr", "d50_rel_error", "wasserstein", "precision"} <= set(run.data.metrics)
    assert client.get_experiment(run.info.experiment_id).name == promotion.GATE_EXPERIMENT


def test_staging_gate_fails_when_sr_does_not_beat_bicubic(store) -> None:
    gain = (m := _measured("1", store))["psnr"] - m["bicubic_psnr"]
    with pytest.raises(CheckFailed, match="PSNR gain over bicubic") as err:
        _promote("1", "staging", store, min_psnr_gain_db=gain + 0.01)
    assert "version 1 to staging blocked" in str(err.value)
    assert _aliases() == {}
    # Just below the measured gain, the same version passes.
    assert _promote("1", "staging", store, min_psnr_gain_db=gain - 0.01).gates_passed


def test_staging_gate_fails_on_data_that_failed_validation(store, tmp_path) -> None:
    from semqa.synth.scenes import SynthConfig, make_pairs
    from validation import validate_pairs

    broken = make_pairs(tmp_path / "broken", 2, SynthConfig(size_px=128), seed=3)
    (broken / "lr" / "synth_0001.tif").unlink()  # a pair without its LR partner
    report = validate_pairs(broken)
    assert not report.success
    version = register_generator_run(untrained_generator(), validation_report=report)
    with pytest.raises(CheckFailed, match="training data validation false"):
        _promote(version, "staging", store)
    no_report = register_generator_run(untrained_generator())
    with pytest.raises(CheckFailed, match="validation not recorded"):
        _promote(no_report, "staging", store)


@pytest.mark.parametrize(
    ("limit", "metric", "gate"),
    [
        ("max_d50_rel_error", "d50_rel_error", "d50_rel_error"),
        ("max_wasserstein_um", "wasserstein", "wasserstein_um"),
        ("max_hallucination_rate", "precision", "hallucination_rate"),
    ],
)
def test_production_psd_limits_pass_and_fail(store, limit, metric, gate) -> None:
    measured = _measured("1", store)[metric]
    value = 1.0 - measured if metric == "precision" else measured
    _promote("1", "staging", store)
    if value > 0:
        with pytest.raises(CheckFailed, match=f"{gate} .* > limit"):
            _promote("1", "production", store, **{limit: value * 0.5})
        assert "production" not in _aliases()
    entry = _promote("1", "production", store, **{limit: value + 1e-3})
    assert entry.gates_passed and _aliases() == {"production": "1"}
    assert next(g for g in entry.gates if g.name == gate).value == pytest.approx(value)


def test_production_needs_staging_first(store) -> None:
    with pytest.raises(CheckFailed, match="does not hold 'staging'"):
        _promote("1", "production", store)


def test_production_regression_gate_against_current_production(store) -> None:
    _promote("1", "staging", store)
    _promote("1", "production", store)
    same = register_same_weights("1")
    _promote(same, "staging", store)
    entry = _promote(same, "production", store)  # identical weights: no regression
    assert next(g for g in entry.gates if g.name == "psnr_drop_db").value == pytest.approx(0.0, abs=1e-9)
    assert _aliases() == {"production": same, "archived": "1"}

    worse = register_generator_run(untrained_generator())
    _promote(worse, "staging", store, require_data_validation=False)
    drop = _measured(same, store)["psnr"] - _measured(worse, store)["psnr"]
    assert drop > 0.5
    with pytest.raises(CheckFailed, match=f"psnr_drop_db .* vs production v{same}"):
        _promote(worse, "production", store, require_data_validation=False)
    assert _aliases()["production"] == same


def test_forced_promotion_is_recorded_as_forced(store) -> None:
    gain = (m := _measured("1", store))["psnr"] - m["bicubic_psnr"]
    with pytest.raises(InputError, match="reason"):
        _promote("1", "staging", store, force=True, reason="  ", min_psnr_gain_db=gain + 1)
    entry = _promote("1", "staging", store, force=True, reason="demo under deviation DV-12", min_psnr_gain_db=gain + 1)
    assert entry.forced and entry.gates_passed is False
    assert _aliases() == {"staging": "1"}
    stored = read_audit()[-1]
    assert stored.forced and stored.reason == "demo under deviation DV-12"
    assert [g.name for g in stored.gates if not g.passed] == ["psnr_gain_over_bicubic"]
    listing = promotion.list_versions()
    assert listing.loc[listing.version == "1", "gates_staging"].item() == "failed: psnr_gain_over_bicubic (forced)"


def test_rollback_restores_previous_production_and_archives_current(store) -> None:
    with pytest.raises(InputError, match="no production version"):
        rollback("nothing to roll back")
    _promote("1", "staging", store)
    _promote("1", "production", store)
    v2 = register_same_weights("1")
    _promote(v2, "staging", store)
    _promote(v2, "production", store)
    entry = rollback("field complaint FC-7")
    assert (entry.version, entry.from_version, entry.archived_version) == ("1", v2, v2)
    assert _aliases() == {"production": "1", "archived": v2}
    with pytest.raises(InputError, match="records no previous production version"):
        rollback("again")
    actions = [(e.action, e.alias, e.version, e.from_version) for e in read_audit()]
    assert actions == [
        ("promote", "staging", "1", None),
        ("promote", "production", "1", None),
        ("promote", "staging", v2, None),
        ("promote", "production", v2, "1"),
        ("rollback", "production", "1", v2),
    ]


def test_audit_is_append_only_and_exports_csv_and_json(store, tmp_path) -> None:
    _promote("1", "staging", store, reason="first")
    client = mlflow.MlflowClient()
    first = {k: v for k, v in client.get_model_version(MODEL_NAME, "1").tags.items() if k.startswith(AUDIT_TAG_PREFIX)}
    _promote("1", "production", store, reason="second")
    after = {k: v for k, v in client.get_model_version(MODEL_NAME, "1").tags.items() if k.startswith(AUDIT_TAG_PREFIX)}
    assert len(after) == 2 and all(after[k] == v for k, v in first.items())

    entries = read_audit()
    csv_path, json_path = tmp_path / "audit.csv", tmp_path / "audit.json"
    export_audit(entries, "csv", csv_path)
    export_audit(entries, "json", json_path)
    table = pd.read_csv(csv_path)
    assert list(table["reason"]) == ["first", "second"]
    assert list(table["alias"]) == ["staging", "production"]
    assert set(table["user"]) == {"qa-engineer"}
    assert list(table["forced"]) == [False, False]
    assert table["timestamp"].str.endswith("Z").all() or table["timestamp"].str.contains(r"\+00:00").all()
    records = json.loads(json_path.read_text())
    assert [r["tag_key"] for r in records] == [e.tag_key for e in entries]
    assert records[1]["gates"] and all(g["passed"] for g in records[1]["gates"])


def test_eval_set_digest_is_fixed_and_follows_content(tmp_path, store) -> None:
    a = eval_set(store["eval"])
    assert a.digest == eval_set(store["eval"]).digest
    copy = tmp_path / "copy"
    shutil.copytree(store["eval"], copy)
    assert folder_digest(copy) == a.digest
    (copy / "manifest.csv").write_text((copy / "manifest.csv").read_text() + "\n")
    assert folder_digest(copy) != a.digest
    with pytest.raises(InputError, match="not found"):
        folder_digest(tmp_path / "missing")


def test_cli_models_commands(store, tmp_path, capsys) -> None:
    eval_args = ["--eval-data", str(store["eval"])]
    # Default limits: a 40-step generator does not beat bicubic → exit 1 naming the gate.
    gain = (m := _measured("1", store))["psnr"] - m["bicubic_psnr"]
    code = main(["models", "promote", "1", "--to", "staging", "--reason", "try", *eval_args])
    if gain <= 0:
        assert code == 1
        assert "PSNR gain over bicubic" in capsys.readouterr().err
        code = main(["models", "promote", "1", "--to", "staging", "--reason", "accepted risk", "--force", *eval_args])
    assert code == 0
    assert "version 1 is now staging" in capsys.readouterr().out
    assert main(["models", "promote", "7", "--to", "staging", "--reason", "x", *eval_args]) == 2
    assert main(["models", "promote", "seven", "--to", "staging", "--reason", "x", *eval_args]) == 2
    assert main(["models", "rollback", "--reason", "x"]) == 2
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "staging" in out and "psnr" in out
    out_file = tmp_path / "audit.json"
    assert main(["models", "audit", "--format", "json", "--out", str(out_file)]) == 0
    assert json.loads(out_file.read_text())[0]["version"] == "1"
    capsys.readouterr()
    assert main(["models", "audit", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("action,model_name,alias,version")
