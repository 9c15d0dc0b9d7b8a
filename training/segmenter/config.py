"""The one configuration of a segmenter training run (pydantic; every field logged to MLflow)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from semqa.particles.archs import SegmenterConfig
from semqa.synth.randomized import MEDIAN_ECD_RANGE_PX
from training.options import Options
from training.segmenter.scenes import SceneMix


class LossWeights(BaseModel):
    """Weights of the three per-pixel loss terms."""

    model_config = ConfigDict(extra="forbid")

    foreground: float = Field(1.0, ge=0, description="binary cross-entropy of the foreground map")
    boundary: float = Field(1.0, ge=0, description="binary cross-entropy of the contact lines, class-balanced per batch")
    distance: float = Field(1.0, ge=0, description="mean squared error of the normalised distance inside particles")


class SegmenterTrainConfig(Options):
    """Data, optimisation and evaluation of one segmenter training (or fine-tuning)."""

    model_config = ConfigDict(extra="forbid")
    key_exclude: ClassVar[set[str]] = {"checkpoint_every", "register_model", "num_threads", "experiment_name"}

    seed: int = 0
    model: SegmenterConfig = Field(default_factory=SegmenterConfig)
    init_from: str | None = Field(None, description="fine-tune: start from this segmenter (models:/ URI or folder)")
    # data
    synthetic_scenes: int = Field(32, ge=0, description="synthetic scenes rendered for training (0: annotated only)")
    scene_size_px: int = Field(256, ge=64, le=2048, description="side of each synthetic scene, px")
    scene_median_ecd_px: tuple[float, float] = Field(
        MEDIAN_ECD_RANGE_PX, description="range of the synthetic scenes' median ECD, px (log-uniform; held-out scenes keep the default)"
    )
    scene_mix: SceneMix = Field(default_factory=SceneMix, description="sources and variations of the synthetic scenes (training and held-out)")
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


def build_config(data: dict, where: str = "segmenter config") -> SegmenterTrainConfig:
    """Validate ``data``; the first error as one-line :class:`InputError`."""
    return SegmenterTrainConfig.validated(data, where)
