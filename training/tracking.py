"""MLflow bookkeeping of a training run: context, per-step metrics, registration.

Only rank 0 of a multi-process run calls these functions.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn

from semqa.components import save_network
from semqa.sr.archs import GeneratorConfig
from semqa.sr.inference import TAG_WEIGHTS_ARTIFACT, TAG_WEIGHTS_DIGEST
from semqa.io.digests import file_digest
from semqa.registry.lineage import RUN_TAG_DATASET_DIGEST
from semqa.registry.store import MODEL_NAME
from semqa.version import code_version
from training.config import TrainConfig
from semqa.evaluation import EvalMetrics

#: Any batch, any image size: the generator is fully convolutional.
GENERATOR_SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1, -1, -1))]),
    outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1, -1, -1))]),
)


def comparison_grid(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """LR (nearest) | bicubic | SR | HR side by side as one ``uint8`` image, logged at each evaluation."""
    s = hr.shape[0] // lr.shape[0]
    lr_big = np.kron(lr, np.ones((s, s), dtype=np.float32))[: hr.shape[0], : hr.shape[1]]
    sep = np.ones((hr.shape[0], 4), dtype=np.float32)
    row = np.concatenate([lr_big, sep, bicubic, sep, sr, sep, hr], axis=1)
    return (np.clip(row, 0, 1) * 255).round().astype(np.uint8)


def environment_text() -> str:
    """Installed distributions as ``name==version`` lines (what ``pip freeze`` lists)."""
    dists = {(d.metadata["Name"] or "?"): d.version for d in importlib.metadata.distributions()}
    return "\n".join(f"{n}=={v}" for n, v in sorted(dists.items(), key=lambda kv: kv[0].lower())) + "\n"


def training_dataset(manifest: pd.DataFrame, name: str, data_dir: Path | None) -> mlflow.data.dataset.Dataset:
    """The run's training data as an MLflow dataset (its digest is computed from ``manifest`` alone).

    The source is given as a typed object: a folder's ``file://`` URI, or, for scenes rendered
    in the run (``data_dir`` None), the code that renders them. A plain string makes MLflow guess between its two
    registrations of the local artifact source and warn on every run (mlflow/mlflow#9702).
    """
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.sources import LocalArtifactDatasetSource

    source = LocalArtifactDatasetSource(data_dir.resolve().as_uri()) if data_dir else CodeDatasetSource({"generator": "semqa.synth"})
    with warnings.catch_warnings():
        # The schema MLflow infers for the manifest warns that integer columns cannot hold
        # missing values at inference time: a manifest is never a model input.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        return mlflow.data.from_pandas(manifest, source=source, name=name)


def log_run_context(config: TrainConfig, manifest: pd.DataFrame, data_dir: Path, mode: str, world_size: int, dataset_digest: str) -> None:
    """Log config params, the dataset (its :func:`semqa.io.digests.dataset_digest`), code version and environment."""
    mlflow.log_params(config.flat_params())
    dataset = training_dataset(manifest, f"{data_dir.name}-{mode}", data_dir)
    mlflow.log_input(dataset, context="training")
    mlflow.set_tags(
        {
            "semqa.code_version": code_version(),
            "semqa.data_mode": mode,
            RUN_TAG_DATASET_DIGEST: dataset_digest,
            "semqa.world_size": str(world_size),
        }
    )
    mlflow.log_text(environment_text(), "environment/pip-freeze.txt")
    mlflow.log_text(manifest.to_csv(index=False), "data/manifest.csv")
    mlflow.log_text(config.model_dump_json(indent=2), "config/train_config.json")


class MetricBuffer:
    """Per-step metrics batched into few ``log_batch`` calls (one SQL transaction each)."""

    def __init__(self, run_id: str, flush_every: int = 50) -> None:
        self.run_id, self.flush_every = run_id, flush_every
        self._pending: list[Metric] = []
        self._client = mlflow.MlflowClient()

    def add(self, values: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in values.items()]
        if len(self._pending) >= self.flush_every * max(1, len(values)):
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._pending), 900):  # MLflow allows 1000 metrics per batch
            self._client.log_batch(self.run_id, metrics=self._pending[i : i + 900])
        self._pending = []


def register_generator(
    ema_generator: nn.Module,
    gen_config: GeneratorConfig,
    *,
    run_id: str,
    step: int,
    metrics: EvalMetrics | None,
    dataset_digest: str,
    validation_report: str,
    register: bool = True,
) -> tuple[str | None, str]:
    """Log the EMA generator (safetensors + arch JSON, and an MLflow pytorch/pyfunc model) and register it.

    Returns
    -------
    (version, weights digest)
        ``version`` is ``None`` when ``register`` is false.
    """
    import torch

    artifact = f"generator/step-{step:07d}"
    module = ema_generator.to("cpu").eval()
    with tempfile.TemporaryDirectory(prefix="semqa-gen-") as tmp:
        weights, arch = save_network(module, gen_config, tmp)
        digest = file_digest(weights)
        mlflow.log_artifacts(tmp, artifact)
        example = np.random.default_rng(0).random((2, 1, 16, 16)).astype(np.float32)
        with torch.no_grad():
            info = mlflow.pytorch.log_model(
                module,
                name="generator",
                input_example=example,
                signature=GENERATOR_SIGNATURE,
                extra_files=[str(weights), str(arch)],
                # No ``step``: with one, MLflow links the run's metrics at that step to the
                # logged model by fetching the whole history of every metric key, one request
                # per key (38 here, each longer as training runs longer). The version's tags
                # carry the held-out metrics (below) and the run keeps every metric.
                # Explicit: the pt2 program needs only torch and numpy, and MLflow's
                # requirement inference would load the model in a subprocess (slow).
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
            )
    if not register:
        return None, digest
    tags = {
        "dataset_digest": dataset_digest,
        "validation_report": validation_report,
        "train_run_id": run_id,
        "code_version": code_version(),
        "steps": str(step),
        TAG_WEIGHTS_ARTIFACT: artifact,
        TAG_WEIGHTS_DIGEST: digest,
        "arch": gen_config.arch,
        "scale": str(gen_config.scale),
    }
    summary = ""
    if metrics is not None:
        for key in ("psnr", "ssim", "bicubic_psnr", "psnr_gain_db", "d50_rel_error", "lr_d50_rel_error", "recall", "precision"):
            value = getattr(metrics, key)
            if value is not None:
                tags[f"val_{key}"] = f"{value:.4g}"
        summary = (
            f" Held-out ({metrics.n_images} images): PSNR {metrics.psnr:.2f} dB vs bicubic {metrics.bicubic_psnr:.2f} dB,"
            f" D50 relative error {metrics.d50_rel_error if metrics.d50_rel_error is not None else float('nan'):.3f}."
        )
    mv = mlflow.register_model(info.model_uri, MODEL_NAME, tags=tags)
    mlflow.MlflowClient().update_model_version(
        MODEL_NAME,
        mv.version,
        description=(
            f"{gen_config.arch} ×{gen_config.scale} EMA generator after {step} steps of run {run_id}; "
            f"data {dataset_digest}; validation {validation_report}.{summary}"
        ),
    )
    return str(mv.version), digest
