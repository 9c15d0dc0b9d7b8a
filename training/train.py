"""GAN super-resolution training (ESRGAN / Real-ESRGAN recipe, BasicSR practice).

Phase 1 (``pretrain_steps``): PSNR-oriented pre-training with pixel, SSIM and gradient
losses, cosine-annealed learning rate. Phase 2 (``gan_steps``): adversarial fine-tuning
against a U-Net discriminator with a relativistic average loss and feature matching. An
exponential moving average (EMA) of the generator weights is what is evaluated and registered.

Architectures come from :data:`semqa.sr.archs.ARCHS` and loss terms from
:data:`training.losses.LOSSES`, both chosen by the typed :class:`training.config.TrainConfig`;
the loop, checkpoints, the MLflow run and the distributed world are
:class:`training.trainer.Trainer`'s. Run with ``torchrun --nproc_per_node N -m semqa.cli train
...`` for DistributedDataParallel.
"""

from __future__ import annotations

import copy
import hashlib
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mlflow
import torch
from pydantic import BaseModel, Field
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel

from semqa.errors import CheckFailed, InputError
from semqa.evaluation import EvalMetrics, as_upscaler, bicubic_upscale, evaluate_generator
from semqa.io.digests import dataset_digest
from semqa.registry.store import store_dir
from semqa.sr.archs import build_discriminator, build_generator
from semqa.sr.pairs import Pair, load_pairs
from training.config import TrainConfig
from training.data import PairData, PatchSampler, split_pairs
from training.losses import LOSSES, LossInputs, relativistic_d_loss
from training.tracking import comparison_grid, log_run_context, register_generator
from training.trainer import CHECKPOINT_FILE, Trainer
from validation import ValidationConfig, log_report_to_mlflow, validate_pairs
from validation.reports import PairValidationReport

__all__ = ["CHECKPOINT_FILE", "GeneratorTrainer", "TrainResult", "train"]

#: Loss terms' names in the run's metrics (``loss_<short>``), kept from the first releases.
_LOG_NAMES = {"adversarial": "adv", "feature_matching": "fm"}


class TrainResult(BaseModel):
    """What a training produced."""

    run_id: str
    model_version: str | None = Field(description="registered semqa-generator version; None when not registered")
    steps: int = Field(description="global step reached")
    completed: bool = Field(description="all configured steps done (else resumable from the checkpoint)")
    resumed_from: int | None = Field(None, description="step of the checkpoint this session continued from")
    weights_digest: str
    metrics: dict[str, float] = Field(default_factory=dict, description="final held-out metrics")


def _ema_avg(decay: float):
    """EMA update with warm-up, ``d = min(decay, (1 + n) / (10 + n))`` (TensorFlow's ExponentialMovingAverage
    with num_updates), so short runs are not dominated by the random initial weights."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


def _lr_factor(config: TrainConfig):
    """Multiplier of ``lr_pretrain``: cosine from 1 to 0.01 over pre-training, then ``lr_g / lr_pretrain``."""

    def factor(step: int) -> float:
        if step < config.pretrain_steps:
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / config.pretrain_steps))
        return config.lr_g / config.lr_pretrain

    return factor


def validation_config(config: TrainConfig) -> ValidationConfig:
    """How training validates its pairs: the scale and pixel sizes it declares, every limit the default."""
    return ValidationConfig(scale=config.scale, hr_pixel_size_um=config.hr_pixel_size_um, lr_pixel_size_um=config.lr_pixel_size_um)


def pairs_digest(pairs: list[Pair]) -> str:
    """The data set digest of the files read (``hr/<name>``, ``lr/<name>``), as validation computes it."""
    files = {f"hr/{p.name}": p.hr_digest for p in pairs}
    files.update({f"lr/{p.name}": p.lr_digest for p in pairs if p.lr_digest})
    return dataset_digest(files)


class GeneratorTrainer(Trainer):
    """Trains, evaluates and registers one SR generator (see the module docstring)."""

    name = "training"

    def __init__(
        self, config: TrainConfig, data_dir: str | Path, *, hr_only: bool = False, allow_invalid_data: bool = False,
        validation: PairValidationReport | None = None,
    ) -> None:
        super().__init__(
            device=config.device,
            experiment_name=config.experiment_name,
            checkpoint_every=config.checkpoint_every,
            eval_every=config.eval_every,
            num_threads=config.num_threads,
        )
        self.config, self.data_dir = config, Path(data_dir)
        self.hr_only, self.allow_invalid_data = hr_only, allow_invalid_data
        self.mode = "hr-only" if hr_only else "paired"
        self.last_metrics: EvalMetrics | None = None
        self.validation = validation
        self.report: PairValidationReport | None = None

    # --- setup -------------------------------------------------------------------------------

    def _validate(self) -> None:
        """Validation (paired mode) on rank 0; refuse failing data unless allowed; every rank learns the verdict."""
        error = None
        if self.rank == 0 and not self.hr_only:
            config = validation_config(self.config)
            report = self._reusable_validation(config) or validate_pairs(
                self.data_dir, config=config, report_dir=self.workdir / "validation_report",
            )
            self.report = report
            if not report.success and not self.allow_invalid_data:
                failed = ", ".join(f"{check} ({len(rows)})" for check, rows in report.failures.items())
                error = CheckFailed(
                    f"training data failed validation: {failed}; see {report.data_docs_index} "
                    f"(pass --allow-invalid-data to train anyway)"
                )
        self.raise_from_rank0(error)

    def _reusable_validation(self, config: ValidationConfig) -> PairValidationReport | None:
        """The caller's report when it validated this folder with this configuration (its files are checked in setup)."""
        v = self.validation
        if v is None or v.config != config or v.pair_dir.resolve() != self.data_dir.resolve():
            return None
        return v

    def setup(self) -> None:
        c = self.config
        self._validate()
        pairs = load_pairs(
            self.data_dir, c.scale, hr_only=self.hr_only, degradation=c.lr_degradation(), seed=c.seed,
            hr_pixel_size_um=c.hr_pixel_size_um,
        )
        train_pairs, self.val_pairs = split_pairs(pairs, c.val_fraction, c.min_val_images, c.max_val_images, c.seed)
        self.sampler = PatchSampler(train_pairs, c.scale, c.patch_size, c.lr_degradation() if self.hr_only else None)
        self.manifest = PairData(train_pairs, self.val_pairs, c.scale, self.mode, self.data_dir).manifest()
        self.dataset_digest = pairs_digest(pairs)
        # A reused report must be of the files trained on; rank 0 holds it, every rank learns the verdict.
        stale = None
        if self.report is not None and self.report is self.validation and self.report.dataset_digest != self.dataset_digest:
            stale = InputError(
                f"the validation report passed to train() is of other files than {self.data_dir} holds now "
                f"({self.report.dataset_digest} vs {self.dataset_digest}); validate again"
            )
        self.raise_from_rank0(stale)
        self._key = c.key(hashlib.sha256(self.manifest.to_csv(index=False).encode()).hexdigest(), self.mode, str(self.world))

        torch.manual_seed(c.seed)
        self.g_raw = build_generator(c.generator).to(self.device)
        self.d_raw = build_discriminator(c.discriminator).to(self.device)
        self.ema = AveragedModel(self.g_raw, multi_avg_fn=_ema_avg(c.ema_decay), use_buffers=True)
        self.opt_g = torch.optim.Adam(self.g_raw.parameters(), lr=c.lr_pretrain, betas=c.betas)
        self.opt_d = torch.optim.Adam(self.d_raw.parameters(), lr=c.lr_d, betas=c.betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _lr_factor(c))
        self.g = DDP(self.g_raw) if self.world > 1 else self.g_raw
        self.d = DDP(self.d_raw) if self.world > 1 else self.d_raw
        weights = c.loss_weights.model_dump()
        self.terms = {name: (LOSSES.get(name), w) for name, w in weights.items() if w > 0}
        on_cuda = self.device.type == "cuda" and c.amp
        self.amp = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()

    @property
    def key(self) -> str:
        return self._key

    @property
    def total_steps(self) -> int:
        return self.config.total_steps

    def checkpoint_path(self) -> Path:
        return (self.config.checkpoint_dir or store_dir() / "checkpoints" / self.key) / CHECKPOINT_FILE

    def run_name(self) -> str:
        return f"{self.config.generator.arch}-x{self.config.scale}-{self.mode}"

    def start_run(self) -> None:
        log_run_context(self.config, self.manifest, self.data_dir, self.mode, self.world, self.dataset_digest)
        if self.report is not None:
            log_report_to_mlflow(self.report)

    # --- one step ----------------------------------------------------------------------------

    def optimize_step(self, step: int) -> dict[str, float]:
        c = self.config
        lr_t, hr_t = self.sampler.batch(c.batch_size, c.seed, step, self.rank)
        lr_t, hr_t = lr_t.to(self.device, non_blocking=True), hr_t.to(self.device, non_blocking=True)
        gan = step >= c.pretrain_steps
        logs: dict[str, float] = {}
        # Generator step (discriminator frozen; used unwrapped so DDP does not expect its gradients).
        self.d_raw.requires_grad_(False)
        with self.amp:
            fake = self.g(lr_t)
            inputs = LossInputs(fake=fake.float(), hr=hr_t.float(), pixel_kind=c.pixel_loss)
            if gan:
                logits, feats = self.d_raw(torch.cat([hr_t, fake]), return_features=True)
                real_l, fake_l = logits.float().chunk(2)
                split = [f.float().chunk(2) for f in feats]
                inputs = LossInputs(
                    fake=inputs.fake, hr=inputs.hr, pixel_kind=c.pixel_loss, real_logits=real_l, fake_logits=fake_l,
                    real_features=[r for r, _ in split], fake_features=[f for _, f in split],
                )
            terms = {name: term(inputs) * w for name, (term, w) in self.terms.items() if gan or not term.adversarial}
            loss_g = sum(terms.values())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(self.g_raw.parameters(), c.grad_clip)
        self.opt_g.step()
        logs.update({f"loss_{_LOG_NAMES.get(k, k)}": float(v.detach()) for k, v in terms.items()})
        logs["loss_g"] = float(loss_g.detach())
        logs["lr_g"] = self.opt_g.param_groups[0]["lr"]
        if gan:
            self.d_raw.requires_grad_(True)
            with self.amp:
                logits = self.d(torch.cat([hr_t, fake.detach()])).float()
                real_l, fake_l = logits.chunk(2)
                loss_d = relativistic_d_loss(real_l, fake_l)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            logs["loss_d"] = float(loss_d.detach())
            logs["lr_d"] = self.opt_d.param_groups[0]["lr"]
        self.sched.step()
        self.ema.update_parameters(self.g_raw)
        return logs

    def progress_postfix(self, logs: dict[str, float], step: int) -> dict[str, str]:
        return {"loss_g": f"{logs['loss_g']:.4f}"}

    def phases(self) -> list[tuple[str, int]]:
        # A GAN step also runs the discriminator and the feature losses: its own rate.
        return [("pretrain", min(self.config.pretrain_steps, self.total_steps)), ("gan", self.total_steps)]

    # --- evaluation, checkpoints, registration -------------------------------------------------

    def validate(self, step: int) -> None:
        if not self.val_pairs:
            return
        module = self.ema.module
        # The held-out views are segmented on every core (rank 0 evaluates while the others wait);
        # the metrics do not depend on the number of workers.
        self.last_metrics = evaluate_generator(module, self.val_pairs, tile_size=self.config.tile_size, workers=None)
        mlflow.log_metrics(self.last_metrics.mlflow_metrics(), step=step)
        first = self.val_pairs[0]
        sr = as_upscaler(module, self.config.tile_size).upscale(first.lr)
        grid = comparison_grid(first.lr, bicubic_upscale(first.lr, first.hr.shape), sr, first.hr)
        mlflow.log_image(grid, key="val_lr_bicubic_sr_hr", step=step)
        module.train()

    def state(self) -> dict[str, Any]:
        return {
            "generator": self.g_raw.state_dict(),
            "discriminator": self.d_raw.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched": self.sched.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.g_raw.load_state_dict(state["generator"])
        self.d_raw.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched.load_state_dict(state["sched"])

    def finish(self, steps: int, completed: bool, resumed_from: int | None) -> TrainResult:
        validation_uri = (
            f"runs:/{self.run_id}/validation" if not self.hr_only else "not applicable: LR synthesised (HR-only mode)"
        )
        version, digest = register_generator(
            copy.deepcopy(self.ema.module),
            self.config.generator,
            run_id=self.run_id,
            step=steps,
            metrics=self.last_metrics,
            dataset_digest=self.dataset_digest,
            validation_report=validation_uri,
            register=self.config.register_model,
        )
        return TrainResult(
            run_id=self.run_id,
            model_version=version,
            steps=steps,
            completed=completed,
            resumed_from=resumed_from,
            weights_digest=digest,
            metrics=self.last_metrics.mlflow_metrics() if self.last_metrics else {},
        )


def train(
    config: TrainConfig,
    data_dir: str | Path,
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    resume: bool = True,
    hr_only: bool = False,
    allow_invalid_data: bool = False,
    progress: bool = False,
    validation: PairValidationReport | None = None,
) -> TrainResult:
    """Train a generator on ``data_dir``, log everything to MLflow and register the EMA generator.

    Parameters
    ----------
    config : TrainConfig
        The whole configuration.
    data_dir : path
        Paired mode: ``DIR/hr`` and ``DIR/lr`` with the same names (validated first).
        HR-only mode: HR images in ``DIR/hr`` or ``DIR``.
    max_steps : int, optional
        Stop at this global step even if the configuration asks for more; the checkpoint
        stays, so a later call continues the same run.
    max_seconds : float, optional
        Stop after this long (checkpointed, resumable).
    resume : bool
        Continue from this configuration's checkpoint for this data when there is one.
    hr_only : bool
        Synthesise LR images with :func:`semqa.sr.degradation.degrade`.
    allow_invalid_data : bool
        Train even when validation fails (the failure is recorded in the run).
    progress : bool
        Show a tqdm progress bar (rank 0).
    validation : PairValidationReport, optional
        The caller's :func:`validation.run.validate_pairs` report of ``data_dir`` made with
        :func:`validation_config` of ``config``: recorded in the run instead of validating the
        pairs a second time. A report of another folder or configuration is ignored (the pairs
        are validated); one whose dataset digest is not that of the files read is refused.

    Raises
    ------
    InputError
        Unusable data or configuration, or a ``validation`` report of other files.
    CheckFailed
        The data failed validation.
    """
    trainer = GeneratorTrainer(
        config, data_dir, hr_only=hr_only, allow_invalid_data=allow_invalid_data, validation=validation,
    )
    return trainer.fit(max_steps=max_steps, max_seconds=max_seconds, resume=resume, progress=progress)
