"""The GAN super-resolution training loop (ESRGAN / Real-ESRGAN recipe, BasicSR practice).

Phase 1 (``pretrain_steps``): PSNR-oriented pre-training with pixel, SSIM and gradient
losses, cosine-annealed learning rate. Phase 2 (``gan_steps``): adversarial fine-tuning
against a U-Net discriminator with a relativistic average loss and feature matching. An
exponential moving average (EMA) of the generator weights is what is evaluated and registered.

Run with ``torchrun --nproc_per_node N -m semqa.cli train ...`` for DistributedDataParallel
(gloo on CPU, nccl on GPU); each process draws its own patches, only rank 0 talks to MLflow.
Checkpoints every ``checkpoint_every`` steps hold everything needed to continue exactly
where a killed run stopped, in the same MLflow run.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import mlflow
import torch
import torch.distributed as dist
from pydantic import BaseModel, Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel

from semqa.sr.archs import build_discriminator, build_generator
from semqa.errors import CheckFailed, InputError
from semqa.registry.store import configure_tracking
from training.config import TrainConfig
from semqa.sr.pairs import load_pairs
from training.data import PairData, PatchSampler, split_pairs
from semqa.evaluation import EvalMetrics, as_upscaler, bicubic_upscale, evaluate_generator
from training.losses import (
    feature_matching_loss,
    gradient_loss,
    pixel_loss,
    relativistic_d_loss,
    relativistic_g_loss,
    ssim_loss,
)
from training.tracking import MetricBuffer, comparison_grid, log_run_context, register_generator
from validation import ValidationConfig, log_report_to_mlflow, validate_pairs

CHECKPOINT_FILE = "last.pt"


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


def _device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _broadcast(obj, rank: int, world: int):
    """``obj`` from rank 0 on every rank."""
    if world == 1:
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _validate(data_dir: Path, config: TrainConfig, allow_invalid: bool, workdir: Path):
    """Run the pair-set validation; refuse failing data unless allowed. Returns the report."""
    report = validate_pairs(data_dir, config=ValidationConfig(scale=config.scale), report_dir=workdir / "validation_report")
    if not report.success and not allow_invalid:
        failed = ", ".join(f"{check} ({len(rows)})" for check, rows in report.failures.items())
        raise CheckFailed(
            f"training data failed validation: {failed}; see {report.data_docs_index} "
            f"(pass --allow-invalid-data to train anyway)"
        )
    return report


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _phase_bar(step: int, stop: int, pretrain_steps: int):
    """A tqdm bar over the training phase that ``step`` is in, ending where that phase ends.

    One bar per phase: a GAN step (generator and discriminator) costs several pretraining
    steps, so a rate measured in one phase mis-states the time left in the other.
    """
    from tqdm import tqdm

    gan = step >= pretrain_steps
    end = stop if gan else min(stop, pretrain_steps)
    return tqdm(total=end, initial=step, desc="training (GAN)" if gan else "pretraining", unit="step", dynamic_ncols=True)


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
    resume : bool
        Continue from this configuration's checkpoint for this data when there is one.
    hr_only : bool
        Synthesise LR images with :func:`semqa.sr.degradation.degrade`.
    allow_invalid_data : bool
        Train even when validation fails (the failure is recorded in the run).
    progress : bool
        Show a tqdm progress bar (rank 0).

    Raises
    ------
    InputError
        Unusable data or configuration.
    CheckFailed
        The data failed validation.
    """
    data_dir = Path(data_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(config, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    workdir = Path(tempfile.mkdtemp(prefix="semqa-train-"))
    try:
        # Validation (paired mode) on rank 0; every rank learns the verdict.
        report, error = None, None
        if rank == 0 and not hr_only:
            try:
                report = _validate(data_dir, config, allow_invalid_data, workdir)
            except (InputError, CheckFailed) as exc:
                error = exc
        error = _broadcast(error, rank, world)
        if error is not None:
            raise error

        pairs = load_pairs(data_dir, config.scale, hr_only=hr_only, degradation=config.lr_degradation(), seed=config.seed)
        train_pairs, val_pairs = split_pairs(pairs, config.val_fraction, config.min_val_images, config.max_val_images, config.seed)
        sampler = PatchSampler(train_pairs, config.scale, config.patch_size, config.lr_degradation() if hr_only else None)
        mode = "hr-only" if hr_only else "paired"
        manifest = PairData(train_pairs, val_pairs, config.scale, mode, data_dir).manifest()

        torch.manual_seed(config.seed)
        g_raw = build_generator(config.generator).to(device)
        d_raw = build_discriminator(config.discriminator).to(device)
        ema = AveragedModel(g_raw, multi_avg_fn=_ema_avg(config.ema_decay), use_buffers=True)
        opt_g = torch.optim.Adam(g_raw.parameters(), lr=config.lr_pretrain, betas=config.betas)
        opt_d = torch.optim.Adam(d_raw.parameters(), lr=config.lr_d, betas=config.betas)
        sched = torch.optim.lr_scheduler.LambdaLR(opt_g, _lr_factor(config))
        g = DDP(g_raw) if world > 1 else g_raw
        d = DDP(d_raw) if world > 1 else d_raw

        key = config.key(hashlib.sha256(manifest.to_csv(index=False).encode()).hexdigest(), mode, str(world))
        ckpt_path = (config.checkpoint_dir or Path("mlruns") / "checkpoints" / key) / CHECKPOINT_FILE
        start, run_id, resumed_from = 0, None, None
        if resume and ckpt_path.is_file():
            state = torch.load(ckpt_path, map_location=device, weights_only=True)
            if state.get("key") != key:
                raise InputError(f"checkpoint {ckpt_path} belongs to another configuration or data set")
            g_raw.load_state_dict(state["generator"])
            d_raw.load_state_dict(state["discriminator"])
            ema.load_state_dict(state["ema"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
            sched.load_state_dict(state["sched"])
            torch.set_rng_state(state["torch_rng"].cpu())
            start, run_id, resumed_from = int(state["step"]), state["run_id"], int(state["step"])
        stop = min(config.total_steps, max_steps) if max_steps is not None else config.total_steps
        if max_steps is not None and max_steps <= start:
            raise InputError(
                f"--max-steps {max_steps} is not beyond the checkpoint's step {start}"
                if start else "--max-steps must be at least 1"
            )

        buffer = data_digest = None
        if rank == 0:
            configure_tracking()
            mlflow.set_experiment(config.experiment_name)
            if run_id is not None:
                mlflow.start_run(run_id=run_id)
                data_digest = mlflow.get_run(run_id).data.tags.get("semqa.data_digest", "")
            else:
                mlflow.start_run(run_name=f"{config.generator.arch}-x{config.scale}-{mode}")
                data_digest = log_run_context(config, manifest, data_dir, mode, world)
                if report is not None:
                    log_report_to_mlflow(report)
            run_id = mlflow.active_run().info.run_id
            buffer = MetricBuffer(run_id)
        run_id = _broadcast(run_id, rank, world)

        amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.amp else nullcontext()
        w = config.loss_weights
        bar = None
        if progress and rank == 0:
            bar = _phase_bar(start, stop, config.pretrain_steps)
        last_metrics: EvalMetrics | None = None
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        step = start
        while step < stop:
            lr_t, hr_t = sampler.batch(config.batch_size, config.seed, step, rank)
            lr_t, hr_t = lr_t.to(device, non_blocking=True), hr_t.to(device, non_blocking=True)
            gan = step >= config.pretrain_steps
            logs: dict[str, float] = {}
            # Generator step (discriminator frozen; used unwrapped so DDP does not expect its gradients).
            d_raw.requires_grad_(False)
            with amp:
                fake = g(lr_t)
                fake32, hr32 = fake.float(), hr_t.float()
                terms = {
                    "pixel": pixel_loss(fake32, hr32, config.pixel_loss) * w.pixel,
                    "ssim": ssim_loss(fake32, hr32) * w.ssim,
                    "gradient": gradient_loss(fake32, hr32) * w.gradient,
                }
                if gan:
                    logits, feats = d_raw(torch.cat([hr_t, fake]), return_features=True)
                    real_l, fake_l = logits.float().chunk(2)
                    terms["adv"] = relativistic_g_loss(real_l, fake_l) * w.adversarial
                    split = [f.float().chunk(2) for f in feats]
                    terms["fm"] = feature_matching_loss([r for r, _ in split], [f for _, f in split]) * w.feature_matching
                loss_g = sum(terms.values())
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            torch.nn.utils.clip_grad_norm_(g_raw.parameters(), config.grad_clip)
            opt_g.step()
            logs.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
            logs["loss_g"] = float(loss_g.detach())
            logs["lr_g"] = opt_g.param_groups[0]["lr"]
            if gan:
                d_raw.requires_grad_(True)
                with amp:
                    logits = d(torch.cat([hr_t, fake.detach()])).float()
                    real_l, fake_l = logits.chunk(2)
                    loss_d = relativistic_d_loss(real_l, fake_l)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                logs["loss_d"] = float(loss_d.detach())
                logs["lr_d"] = opt_d.param_groups[0]["lr"]
            sched.step()
            ema.update_parameters(g_raw)
            done = step = step + 1
            if deadline is not None and _broadcast(time.monotonic() > deadline, rank, world):
                stop = done
            if rank == 0:
                buffer.add(logs, done)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss_g=f"{logs['loss_g']:.4f}")
                    if done == config.pretrain_steps < stop:
                        bar.close()
                        bar = _phase_bar(done, stop, config.pretrain_steps)
                if val_pairs and (done % config.eval_every == 0 or done == stop):
                    buffer.flush()
                    last_metrics = _evaluate_and_log(ema.module, val_pairs, config, done)
                if done % config.checkpoint_every == 0 or done == stop:
                    buffer.flush()
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "key": key,
                            "step": done,
                            "run_id": run_id,
                            "generator": g_raw.state_dict(),
                            "discriminator": d_raw.state_dict(),
                            "ema": ema.state_dict(),
                            "opt_g": opt_g.state_dict(),
                            "opt_d": opt_d.state_dict(),
                            "sched": sched.state_dict(),
                            "torch_rng": torch.get_rng_state(),
                        },
                    )
        if bar is not None:
            bar.close()

        result = None
        if rank == 0:
            buffer.flush()
            completed = stop >= config.total_steps
            validation_uri = f"runs:/{run_id}/validation" if report is not None else "not applicable: LR synthesised (HR-only mode)"
            version, digest = register_generator(
                copy.deepcopy(ema.module),
                config.generator,
                run_id=run_id,
                step=stop,
                metrics=last_metrics,
                data_digest=data_digest or "",
                validation_report=validation_uri,
                register=config.register_model,
            )
            mlflow.set_tags({"semqa.completed": str(completed).lower(), "semqa.steps": str(stop)})
            mlflow.end_run()
            if completed:
                shutil.rmtree(ckpt_path.parent, ignore_errors=True)
            result = TrainResult(
                run_id=run_id,
                model_version=version,
                steps=stop,
                completed=completed,
                resumed_from=resumed_from,
                weights_digest=digest,
                metrics=last_metrics.mlflow_metrics() if last_metrics else {},
            )
        result = _broadcast(result, rank, world)
        return result
    finally:
        if rank == 0 and mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED")
        shutil.rmtree(workdir, ignore_errors=True)
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _evaluate_and_log(ema_module: nn.Module, val_pairs, config: TrainConfig, step: int) -> EvalMetrics:
    metrics = evaluate_generator(ema_module, val_pairs, tile_size=config.tile_size)
    mlflow.log_metrics(metrics.mlflow_metrics(), step=step)
    first = val_pairs[0]
    sr = as_upscaler(ema_module, config.tile_size).upscale(first.lr)
    grid = comparison_grid(first.lr, bicubic_upscale(first.lr, first.hr.shape), sr, first.hr)
    mlflow.log_image(grid, key="val_lr_bicubic_sr_hr", step=step)
    ema_module.train()
    return metrics
