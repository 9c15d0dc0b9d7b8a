"""Train (or fine-tune) the learned segmenter, track it in MLflow, register ``semqa-segmenter``.

One MLflow run holds the configuration, the data manifest and its digest
(``mlflow.data.from_pandas``), per-step losses, the held-out evaluation
(:func:`semqa.particles.matching.score_image` of the whole inference path, beside the
classic pipeline's score on the same images) and the weights (safetensors + arch JSON).
The version is registered straight from those artifacts, tagged as the generator's are
(:func:`training.tracking.register_generator`), with ``model_kind=segmenter``.

Held-out data: the annotated images split off by ``val_fraction`` when annotated data is
given (fine-tuning is judged on the user's own images), else seeded synthetic scenes drawn
from the same randomized families with a different seed.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from semqa.components import save_network
from semqa.errors import InputError
from semqa.particles.annotations import Annotated, load_annotated
from semqa.particles.archs import BOUNDARY, DISTANCE, FOREGROUND, build_segmenter
from semqa.particles.learned import (
    LearnedSegmenter,
    load_segmenter,
)
from semqa.particles.matching import SegmentationScore, score_set
from semqa.particles.segmentation import segment
from semqa.registry.lineage import VALIDATION_REPORT_ARTIFACT
from semqa.registry.promotion import TAG_DATA_VALIDATION
from semqa.registry.store import SEGMENTER_MODEL_NAME, store_dir
from semqa.results import SegmenterRef
from semqa.sr.inference import TAG_WEIGHTS_ARTIFACT, TAG_WEIGHTS_DIGEST
from semqa.io.digests import file_digest
from semqa.synth.randomized import MEDIAN_ECD_RANGE_PX
from semqa.version import code_version
from training.segmenter.config import SegmenterTrainConfig
from training.segmenter.data import PatchSampler, annotated_samples, synthetic_samples
from training.segmenter.scenes import SceneMix, mixed_scene
from training.tracking import environment_text, training_dataset
from training.trainer import CHECKPOINT_FILE, Trainer


class SegmenterTrainResult(BaseModel):
    """What a segmenter training produced."""

    run_id: str
    model_version: str | None = Field(description="registered semqa-segmenter version; None when not registered")
    steps: int
    weights_digest: str
    heldout: SegmentationScore | None = Field(None, description="learned segmenter on the held-out set")
    heldout_classic: SegmentationScore | None = Field(None, description="classic pipeline on the same images")


def split_annotated(items: list[Annotated], val_fraction: float, seed: int) -> tuple[list[Annotated], list[Annotated]]:
    """Random split by image; at least one image held out when there are two or more."""
    if len(items) < 2 or val_fraction == 0:
        return items, []
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, round(val_fraction * len(items)))
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


def synthetic_heldout(n: int, size_px: int, seed: int, mix: SceneMix | None = None) -> list[Annotated]:
    """Seeded synthetic held-out scenes of ``mix`` (a seed stream the training scenes never use)."""
    out = []
    for i in range(n):
        image, labels, _ = mixed_scene(mix or SceneMix(), seed, (1_000_003, i), size_px, MEDIAN_ECD_RANGE_PX)
        out.append(Annotated(name=f"heldout-{i:03d}", image=image, labels=labels, pixel_size_um=0.1))
    return out


def loss_terms(out: torch.Tensor, target: torch.Tensor, config: SegmenterTrainConfig) -> dict[str, torch.Tensor]:
    """The three loss terms of a batch: ``out`` (N, 3, P, P) logits/maps, ``target`` (N, 3, P, P)."""
    fg, bnd, dist = target[:, 0], target[:, 1], target[:, 2]
    # Plain (unweighted) cross-entropy keeps the boundary output a calibrated probability, which
    # the decoder's 0.5 threshold assumes (the Bayes decision). A class-balanced weight w (HED,
    # Xie & Tu 2015) moves the fitted probability to w·p / (w·p + 1 − p): with w ≈ 30 a pixel
    # with a 3 % chance of being a contact line reads as 0.5, markers are cut apart and
    # particles split and shrink. Rarity is handled by the term's weight in ``config.loss``.
    inside = fg.sum().clamp(min=1.0)
    return {
        "loss_foreground": F.binary_cross_entropy_with_logits(out[:, FOREGROUND], fg),
        "loss_boundary": F.binary_cross_entropy_with_logits(out[:, BOUNDARY], bnd),
        "loss_distance": (((out[:, DISTANCE] - dist) ** 2) * fg).sum() / inside,
    }


def _log_data(manifest: pd.DataFrame, config: SegmenterTrainConfig, annotated_dir: Path | None) -> str:
    dataset = training_dataset(manifest, "segmenter-training", annotated_dir)
    mlflow.log_input(dataset, context="training")
    mlflow.log_params(config.flat_params())
    mlflow.set_tags({
        "semqa.code_version": code_version(),
        "semqa.dataset_digest": dataset.digest,
        "semqa.model_kind": "segmenter",
        # Synthetic masks are exact by construction and annotations were checked on loading
        # (shapes, integer labels): the data-validation gate of promotion reads this tag.
        TAG_DATA_VALIDATION: "true",
    })
    mlflow.log_text(manifest.to_csv(index=False), "data/manifest.csv")
    # The report lineage follows (semqa.registry.lineage, as for a generator's training pairs):
    # what was checked, for the data set with this digest.
    mlflow.log_dict({
        "kind": "segmenter-training",
        "success": True,
        "dataset_digest": dataset.digest,
        "failures": [],
        "checks": "synthetic masks exact by construction; annotated images and labels checked on loading (shapes, integer labels)",
    }, VALIDATION_REPORT_ARTIFACT)
    mlflow.log_text(config.model_dump_json(indent=2), "config/segmenter_train_config.json")
    mlflow.log_text(environment_text(), "environment/pip-freeze.txt")
    return dataset.digest


def _register(run_id: str, artifact: str, digest: str, data_digest: str, steps: int, heldout: SegmentationScore | None) -> str:
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(SEGMENTER_MODEL_NAME)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(SEGMENTER_MODEL_NAME, description="semqa learned particle segmenter (U-Net + marker watershed)")
    tags = {
        "model_kind": "segmenter",
        "dataset_digest": data_digest,
        "train_run_id": run_id,
        "code_version": code_version(),
        "steps": str(steps),
        TAG_WEIGHTS_ARTIFACT: artifact,
        TAG_WEIGHTS_DIGEST: digest,
    }
    if heldout is not None:
        for key in ("count_rel_error", "d50_rel_error", "precision", "recall", "mean_iou"):
            value = getattr(heldout, key)
            if value is not None:
                tags[f"val_{key}"] = f"{value:.4g}"
    mv = client.create_model_version(
        SEGMENTER_MODEL_NAME, source=mlflow.get_artifact_uri(artifact), run_id=run_id, tags=tags,
        description=f"U-Net segmenter after {steps} steps of run {run_id}; data {data_digest}.",
    )
    return str(mv.version)


class SegmenterTrainer(Trainer):
    """Trains, evaluates and registers one learned segmenter on :class:`training.trainer.Trainer`'s loop."""

    name = "segmenter training"

    def __init__(
        self,
        config: SegmenterTrainConfig,
        *,
        annotated_dir: str | Path | None = None,
        heldout_dir: str | Path | None = None,
        pixel_size_um: float | None = None,
    ) -> None:
        super().__init__(
            device="auto",
            experiment_name=config.experiment_name,
            checkpoint_every=config.checkpoint_every,
            eval_every=config.steps,  # the held-out evaluation runs once, on the final weights
            num_threads=config.num_threads,
        )
        self.config = config
        self.annotated_dir = Path(annotated_dir) if annotated_dir else None
        self.heldout_dir = Path(heldout_dir) if heldout_dir else None
        self.pixel_size_um = pixel_size_um
        self.score: SegmentationScore | None = None
        self.classic: SegmentationScore | None = None

    def setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        samples, manifest = synthetic_samples(c.synthetic_scenes, c.scene_size_px, c.model, c.seed, c.scene_median_ecd_px, c.scene_mix)
        heldout: list[Annotated] = []
        if self.annotated_dir is not None:
            items = load_annotated(self.annotated_dir, pixel_size_um=self.pixel_size_um)
            train_items, heldout = split_annotated(items, c.val_fraction, c.seed)
            ann, ann_manifest = annotated_samples(train_items, c.model)
            samples += ann * c.annotated_repeat
            manifest = pd.concat([manifest, ann_manifest], ignore_index=True)
        if self.heldout_dir is not None:
            heldout = load_annotated(self.heldout_dir, pixel_size_um=self.pixel_size_um)
        if not heldout and c.heldout_scenes:
            heldout = synthetic_heldout(c.heldout_scenes, c.heldout_size_px, c.seed, c.scene_mix)
        if not samples:
            raise InputError("no training images: set synthetic_scenes > 0 or give annotated images")
        if c.patch_size % (2**c.model.depth):
            raise InputError(f"patch_size {c.patch_size} must be a multiple of 2^depth = {2**c.model.depth}")
        self.heldout, self.manifest = heldout, manifest
        if c.init_from:
            start = load_segmenter(c.init_from, device="cpu")
            if start.config != c.model:
                raise InputError(f"init_from {c.init_from} has architecture {start.config}, the config asks {c.model}")
            self.net = start.net.train()
        else:
            self.net = build_segmenter(c.model)
        self.net.to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, c.steps) / c.steps))
        )
        self.sampler = PatchSampler(samples, c.patch_size, c.seed)
        self._key = c.key(hashlib.sha256(manifest.to_csv(index=False).encode()).hexdigest(), str(self.world))

    @property
    def key(self) -> str:
        return self._key

    @property
    def total_steps(self) -> int:
        return self.config.steps

    def checkpoint_path(self) -> Path:
        return store_dir() / "checkpoints" / f"segmenter-{self.key}" / CHECKPOINT_FILE

    def run_name(self) -> str:
        return "segmenter-finetune" if self.config.init_from else "segmenter"

    def start_run(self) -> None:
        self.dataset_digest = _log_data(self.manifest, self.config, self.annotated_dir)
        if self.config.init_from:
            mlflow.set_tag("semqa.init_from", self.config.init_from)

    def optimize_step(self, step: int) -> dict[str, float]:
        c = self.config
        self.net.train()
        batch = torch.from_numpy(self.sampler.batch(c.batch_size, step)).to(self.device)
        terms = loss_terms(self.net(batch[:, :1]), batch[:, 1:], c)
        loss = sum(getattr(c.loss, k.removeprefix("loss_")) * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}

    def _learned(self, digest: str | None = None) -> LearnedSegmenter:
        return LearnedSegmenter(self.net.eval(), self.config.model, SegmenterRef(kind="learned", weights_digest=digest), self.device)

    def validate(self, step: int) -> None:
        if not self.heldout:
            return
        self.score = score_set(self._learned().segment, self.heldout)
        self.classic = score_set(segment, self.heldout)
        for prefix, s in (("heldout", self.score), ("heldout_classic", self.classic)):
            mlflow.log_metrics({f"{prefix}_{k}": float(v) for k, v in s.model_dump().items() if v is not None}, step=step)

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])

    def finish(self, steps: int, completed: bool, resumed_from: int | None) -> SegmenterTrainResult:
        self.net.eval()
        with tempfile.TemporaryDirectory(prefix="semqa-seg-") as tmp:
            weights, _ = save_network(self.net, self.config.model, tmp)
            digest = file_digest(weights)
            artifact = f"segmenter/step-{steps:07d}"
            mlflow.log_artifacts(tmp, artifact)
        digest_tag = mlflow.get_run(self.run_id).data.tags.get("semqa.dataset_digest", "")
        version = None
        if self.config.register_model and completed:
            version = _register(self.run_id, artifact, digest, digest_tag, steps, self.score)
            mlflow.set_tag("semqa.registered_version", version)
        return SegmenterTrainResult(
            run_id=self.run_id, model_version=version, steps=steps, weights_digest=digest,
            heldout=self.score, heldout_classic=self.classic,
        )


def train_segmenter(
    config: SegmenterTrainConfig,
    *,
    annotated_dir: str | Path | None = None,
    heldout_dir: str | Path | None = None,
    pixel_size_um: float | None = None,
    max_steps: int | None = None,
    resume: bool = True,
) -> SegmenterTrainResult:
    """Train (from scratch or ``config.init_from``) on synthetic and/or annotated images.

    Parameters
    ----------
    config : SegmenterTrainConfig
    annotated_dir : path, optional
        A user's annotated images (:func:`semqa.particles.annotations.load_annotated`).
    heldout_dir : path, optional
        A separate annotated held-out set; default: split ``annotated_dir`` by
        ``config.val_fraction``, or synthetic held-out scenes.
    pixel_size_um : float, optional
        Pixel size for annotated images without one (sizes only; errors are relative).
    max_steps : int, optional
        Stop at this step (checkpointed; a later call continues the same run).
    resume : bool
        Continue from this training's checkpoint when there is one.

    Raises
    ------
    InputError
        No training data (no synthetic scenes and no annotated images), unreadable annotations.
    """
    trainer = SegmenterTrainer(config, annotated_dir=annotated_dir, heldout_dir=heldout_dir, pixel_size_um=pixel_size_um)
    return trainer.fit(max_steps=max_steps, resume=resume)
