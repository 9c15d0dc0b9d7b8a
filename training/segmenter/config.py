"""The one configuration of a segmenter training run (pydantic; every field logged to MLflow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from semqa.errors import InputError
from semqa.particles.archs import SegmenterConfig
from training.config import TrainConfig


class LossWeights(BaseModel):
    """Weights of the three per-pixel loss terms."""

    model_config = ConfigDict(extra="forbid")

    foreground: float = Field(1.0, ge=0, description="binary cross-entropy of the foreground map")
    boundary: float = Field(1.0, ge=0, description="binary cross-entropy of the contact lines, class-balanced per batch")
    distance: float = Field(1.0, ge=0, description="mean squared error of the normalised distance inside particles")


class SegmenterTrainConfig(BaseModel):
    """Data, optimisation and evaluation of one segmenter training (or fine-tuning)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    model: SegmenterConfig = Field(default_factory=SegmenterConfig)
    init_from: str | None = Field(None, description="fine-tune: start from this segmenter (models:/ URI or folder)")
    # data
    synthetic_scenes: int = Field(32, ge=0, description="randomized synthetic scenes rendered for training (0: annotated only)")
    scene_size_px: int = Field(256, ge=64, le=2048, description="side of each synthetic scene, px")
    annotated_repeat: int = Field(4, ge=1, description="how often each annotated image is listed among the training samples")
    patch_size: int = Field(64, ge=16, description="training patch side at working scale, px (a multiple of 2^depth)")
    batch_size: int = Field(8, ge=1)
    # optimisation
    steps: int = Field(800, ge=1)
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (a kill loses at most this many)")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate (cosine-annealed)")
    loss: LossWeights = Field(default_factory=LossWeights)
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; default torch's")
    # evaluation
    heldout_scenes: int = Field(6, ge=0, description="synthetic held-out scenes when no annotated held-out set is given")
    heldout_size_px: int = Field(384, ge=64, description="side of the synthetic held-out scenes, px")
    val_fraction: float = Field(0.34, ge=0, lt=1, description="share of annotated images held out (split by image)")
    experiment_name: str = "semqa-segmenter"
    register_model: bool = True

    # Same flattening and checkpoint key as the generator's config (they only read model_dump).
    flat_params = TrainConfig.flat_params

    def key(self, *extra: str) -> str:
        """A short digest of the fields that shape the trained weights (and ``extra``)."""
        fields = self.model_dump(mode="json", exclude={"checkpoint_every", "register_model", "num_threads", "experiment_name"})
        return hashlib.sha256(json.dumps([fields, *extra], sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> SegmenterTrainConfig:
        """Load and validate a YAML file (then ``overrides``); errors become one-line :class:`InputError`."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"no such config file: {path}") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of segmenter training settings")
        return build_config({**data, **overrides}, str(path))


def build_config(data: dict, where: str = "segmenter config") -> SegmenterTrainConfig:
    """Validate ``data``; the first error as one-line :class:`InputError`."""
    try:
        return SegmenterTrainConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "config"
        raise InputError(f"{where}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None
