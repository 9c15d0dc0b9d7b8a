"""Real generators in a real MLflow store for the registry, lineage and server tests.

One tiny generator is trained once per test session with :func:`training.train.train`
(paired synthetic data, validated by Great Expectations, registered as version 1) into a
template store; each test copies the template's database and works on its copy. Further
versions are registered from real artifacts: the same trained weights, a freshly
initialised (untrained) generator, or weights trained on data that failed validation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
import torch

from semqa.components import save_network
from semqa.sr.archs import GeneratorConfig, build_generator
from semqa.registry.promotion import GateConfig
from semqa.sr.inference import TAG_WEIGHTS_ARTIFACT, TAG_WEIGHTS_DIGEST
from semqa.io.digests import file_digest
from semqa.registry.store import MODEL_NAME
from semqa.synth.scenes import SynthConfig, make_pairs
from semqa.version import code_version
from mlflow_store import empty_store, fresh_store

TINY = GeneratorConfig(arch="srvgg", num_feat=8, num_conv=2, scale=4)
SIZE_PX = 192
#: Gate limits far from any value a real generator gives: every gate passes.
LOOSE_GATES = GateConfig(min_psnr_gain_db=-100.0, max_d50_rel_error=10.0, max_wasserstein_um=100.0, max_hallucination_rate=1.0)


def _train_template(folder: Path, tmp_path_factory) -> str:
    """Train and register version 1 in ``folder/mlruns`` (a copy of the session's migrated store); returns the training run id."""
    from training.config import demo_config
    from training.train import train

    folder.mkdir(parents=True, exist_ok=True)
    pairs = make_pairs(folder / "pairs", 3, SynthConfig(size_px=SIZE_PX), seed=1)
    make_pairs(folder / "eval", 2, SynthConfig(size_px=SIZE_PX), seed=99)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    empty_store(tmp_path_factory, folder / "mlruns")
    # training.train points MLflow at semqa.registry.store.tracking_uri(): name this store there.
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    config = demo_config(
        generator=TINY, pretrain_steps=40, gan_steps=0, batch_size=4, eval_every=1000,
        checkpoint_every=1000, max_val_images=1, checkpoint_dir=folder / "ckpt",
    )
    result = train(config, pairs)
    assert result.model_version == "1"
    return result.run_id


def trained_template(tmp_path_factory) -> dict:
    """The session's template store with version 1 trained (made on first use).

    Returns ``db`` (the template database), ``pairs`` (training pairs), ``eval`` (the fixed
    evaluation set) and ``run_id`` (the training run).
    """
    folder = tmp_path_factory.getbasetemp() / "registry-template"
    marker = folder / "done"
    if not marker.is_file():
        old_cwd, old_uri = Path.cwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.chdir(tmp_path_factory.getbasetemp())
        try:
            run_id = _train_template(folder, tmp_path_factory)
        finally:
            os.chdir(old_cwd)
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            if old_uri is not None:
                os.environ["MLFLOW_TRACKING_URI"] = old_uri
        marker.write_text(run_id)
    return {"db": folder / "mlruns" / "mlflow.db", "pairs": folder / "pairs", "eval": folder / "eval", "run_id": marker.read_text()}


def promoted_template(tmp_path_factory) -> dict:
    """The trained template with version 1 promoted to staging, then production (made on first use).

    As :func:`trained_template` returns, with ``db`` the promoted store: tests that need a
    production model copy it instead of evaluating and promoting version 1 each time. The
    promotions are real (:func:`semqa.registry.promotion.promote` with the real evaluator on
    the template's evaluation set, :data:`LOOSE_GATES`), so the copy holds their evaluation
    run and audit entries; their artifacts stay in this folder, which no test writes.
    """
    import pytest

    from semqa.evaluation import evaluate_model_uri
    from semqa.registry.promotion import promote

    template = trained_template(tmp_path_factory)
    folder = tmp_path_factory.getbasetemp() / "registry-promoted"
    marker = folder / "done"
    if not marker.is_file():
        with pytest.MonkeyPatch.context() as mp:
            fresh_store(template["db"], folder, mp)
            for alias in ("staging", "production"):
                promote("1", alias, "test template", evaluator=evaluate_model_uri, eval_data=template["eval"], config=LOOSE_GATES)
        # fresh_store pointed MLflow's globals here; the caller's copy points them at its own store.
        marker.write_text("promoted")
    return {**template, "db": folder / "mlruns" / "mlflow.db"}


def use_copy(template: dict, workdir: Path, monkeypatch) -> str:
    """Copy the template database into ``workdir/mlruns``, chdir there and point MLflow at it."""
    return fresh_store(template["db"], workdir, monkeypatch)


def register_same_weights(version: str = "1") -> str:
    """A new version of the weights ``version`` holds (same run, same artifacts)."""
    client = mlflow.MlflowClient()
    mv = client.get_model_version(MODEL_NAME, version)
    # Only the tags training wrote at registration; audit and gate tags belong to ``version``.
    tags = {k: v for k, v in mv.tags.items() if not k.startswith(("audit.", "semqa."))}
    return str(client.create_model_version(MODEL_NAME, mv.source, run_id=mv.run_id, tags=tags).version)


def register_generator_run(generator: torch.nn.Module, *, validation_report=None) -> str:
    """Log ``generator``'s files in a new run (with a real validation report if given) and register it."""
    from validation import log_report_to_mlflow

    mlflow.set_experiment("registry-tests")
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tag("semqa.code_version", code_version())
        if validation_report is not None:
            log_report_to_mlflow(validation_report)
        weights, _ = save_network(generator, TINY, tmp)
        digest = file_digest(weights)
        mlflow.log_artifacts(tmp, "generator/files")
    tags = {TAG_WEIGHTS_ARTIFACT: "generator/files", TAG_WEIGHTS_DIGEST: digest}
    mv = mlflow.MlflowClient().create_model_version(MODEL_NAME, f"runs:/{run.info.run_id}/generator/files", run_id=run.info.run_id, tags=tags)
    return str(mv.version)


def untrained_generator(seed: int = 5) -> torch.nn.Module:
    """A freshly initialised generator with perturbed weights: far worse than bicubic."""
    torch.manual_seed(seed)
    g = build_generator(TINY)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return g
