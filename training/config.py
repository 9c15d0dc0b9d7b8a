"""The one configuration of a training run, loaded from YAML and validated by pydantic.

Every field is logged to MLflow as a parameter, and the checkpoint of a run is keyed on
this configuration, so a resumed run is guaranteed to continue the same training.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from semqa.sr.archs import DiscriminatorConfig, GeneratorConfig
from semqa.sr.degradation import DegradationConfig
from training.options import Options


class LossWeights(BaseModel):
    """Weights of the generator's loss terms (a zero weight switches a term off)."""

    model_config = ConfigDict(extra="forbid")

    pixel: float = Field(1.0, ge=0, description="L1 or Charbonnier distance to HR")
    ssim: float = Field(0.2, ge=0, description="1 − SSIM")
    gradient: float = Field(0.5, ge=0, description="L1 of Sobel gradients (edges = particle outlines)")
    adversarial: float = Field(0.005, ge=0, description="relativistic average GAN loss (GAN phase only)")
    feature_matching: float = Field(0.05, ge=0, description="L1 of discriminator decoder features (GAN phase only)")


class TrainConfig(Options):
    """A GAN super-resolution training: model, data, optimisation, evaluation, tracking.

    Two phases as in ESRGAN / Real-ESRGAN: ``pretrain_steps`` of PSNR-oriented training
    (pixel, SSIM and gradient losses only), then ``gan_steps`` of adversarial fine-tuning.
    """

    model_config = ConfigDict(extra="forbid")
    key_exclude: ClassVar[set[str]] = {
        "checkpoint_dir", "eval_every", "register_model", "num_threads", "experiment_name", "hr_pixel_size_um",
        "lr_pixel_size_um",
    }

    seed: int = 0
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=lambda: DiscriminatorConfig(num_feat=8))
    degradation: DegradationConfig | None = Field(
        None, description="HR-only mode: how LR images are synthesised; default the degradation at the generator's scale"
    )

    # Data
    patch_size: int = Field(128, ge=16, description="HR patch side in pixels (a multiple of 8 × scale)")
    batch_size: int = Field(8, ge=1, description="patches per step and process")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of images held out for evaluation (split by image)")
    min_val_images: int = Field(1, ge=0)
    max_val_images: int = Field(8, ge=1, description="held-out images evaluated at most")
    hr_pixel_size_um: float | None = Field(
        None, gt=0, description="µm per HR pixel of every pair, overriding metadata (PNG pair sets carry none); "
        "used by validation and the held-out PSD errors"
    )
    lr_pixel_size_um: float | None = Field(
        None, gt=0, description="µm per LR pixel of every pair, overriding metadata; validation checks it against "
        "hr_pixel_size_um × scale"
    )

    # Optimisation
    pretrain_steps: int = Field(1500, ge=0)
    gan_steps: int = Field(100, ge=0)
    lr_pretrain: float = Field(2e-3, gt=0, description="Adam LR of the pre-training phase (cosine-annealed)")
    lr_g: float = Field(1e-4, gt=0, description="generator LR of the GAN phase")
    lr_d: float = Field(1e-4, gt=0, description="discriminator LR of the GAN phase")
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm of the generator")
    pixel_loss: Literal["l1", "charbonnier"] = "charbonnier"
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of generator weights (warmed up over the first steps)")

    # Evaluation, checkpoints, tracking
    eval_every: int = Field(500, ge=1, description="steps between evaluations on the held-out images")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (a kill loses at most this many)")
    checkpoint_dir: Path | None = Field(None, description="default <store folder>/checkpoints/<config+data key> (semqa.registry.store.store_dir)")
    experiment_name: str = "semqa-sr"
    register_model: bool = Field(True, description="register the EMA generator as a new semqa-generator version")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; default torch's")
    tile_size: int = Field(256, ge=32, description="LR window side of tiled inference during evaluation")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        s = self.generator.scale
        if self.patch_size % (8 * s):
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of 8 × scale = {8 * s}")
        if self.degradation is not None and self.degradation.scale != s:
            raise ValueError(f"degradation.scale {self.degradation.scale} differs from generator.scale {s}")
        if self.pretrain_steps + self.gan_steps == 0:
            raise ValueError("pretrain_steps + gan_steps must be > 0")
        return self

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.gan_steps

    @property
    def scale(self) -> int:
        return self.generator.scale

    def lr_degradation(self) -> DegradationConfig:
        """The degradation used in HR-only mode."""
        return self.degradation or DegradationConfig(scale=self.scale)


def demo_config(**overrides) -> TrainConfig:
    """A short training for ``semqa demo`` (about 2 minutes on 2 free CPU cores).

    A narrower compact generator, shorter pre-training and a brief GAN phase; on the
    synthetic pairs most of the gain over bicubic comes from pre-training (≈ +2.5 dB after
    500 steps in our runs), so the model is usable although short. The step counts are those
    ``semqa demo`` trains (:class:`semqa.demo.DemoOptions`), so this preset is the demo's model.
    """
    from semqa.demo import DemoOptions

    steps = DemoOptions()
    base = dict(
        generator=GeneratorConfig(arch="srvgg", num_feat=24, num_conv=6, scale=4),
        discriminator=DiscriminatorConfig(num_feat=8),
        pretrain_steps=steps.pretrain_steps,
        gan_steps=steps.gan_steps,
        ema_decay=0.99,
        eval_every=steps.steps,
        checkpoint_every=100,
        max_val_images=4,
    )
    base.update(overrides)
    return TrainConfig.model_validate(base)
