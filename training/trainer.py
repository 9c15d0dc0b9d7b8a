"""The training loop every semqa model shares: setup, resume, optimise, validate, save, register.

A model's trainer subclasses :class:`Trainer` and fills in its steps (BasicSR's model/trainer
split): :meth:`Trainer.build` makes networks and optimisers, :meth:`Trainer.optimize_step`
runs one step and returns what to log, :meth:`Trainer.validate` evaluates the held-out data,
:meth:`Trainer.state` / :meth:`Trainer.load_state` are what a checkpoint holds, and
:meth:`Trainer.finish` registers the result. :meth:`Trainer.fit` is the recipe and owns what
is the same for every model: the distributed world, the MLflow run, metric batching,
checkpoints every ``checkpoint_every`` steps (atomic, keyed on the configuration and data so a
resumed run continues exactly where a killed one stopped), the progress bar (time left estimated per
phase, :meth:`Trainer.phases`), a time budget.

Run under ``torchrun`` for DistributedDataParallel (gloo on CPU, nccl on GPU): each process
draws its own batches, only rank 0 talks to MLflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import mlflow
import torch
import torch.distributed as dist

from semqa.errors import InputError
from semqa.registry.store import configure_tracking, ensure_experiment
from training.progress import PhaseEta
from training.tracking import MetricBuffer

CHECKPOINT_FILE = "last.pt"


def select_device(requested: str, local_rank: int) -> torch.device:
    """``"auto"`` → CUDA when present; ``"cuda"`` without a GPU is an error."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class Trainer(ABC):
    """One training run of one model; subclasses define the model's steps.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    experiment_name : str
        MLflow experiment of the run.
    checkpoint_every, eval_every : int
        Steps between checkpoints and between held-out evaluations.
    num_threads : int, optional
        torch CPU threads.
    """

    #: Shown by the progress bar.
    name = "training"

    def __init__(
        self, *, device: str, experiment_name: str, checkpoint_every: int, eval_every: int, num_threads: int | None = None
    ) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        self.device = select_device(device, local_rank)
        self.experiment_name = experiment_name
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if num_threads:
            torch.set_num_threads(num_threads)
        self.workdir = Path(tempfile.mkdtemp(prefix="semqa-train-"))
        self.run_id: str | None = None
        self.buffer: MetricBuffer | None = None

    # --- what a model's trainer defines ----------------------------------------------------

    @abstractmethod
    def setup(self) -> None:
        """Read, validate and split the data; build networks and optimisers."""

    @property
    @abstractmethod
    def key(self) -> str:
        """Digest of the configuration and data: a checkpoint only resumes the same training."""

    @property
    @abstractmethod
    def total_steps(self) -> int:
        """Steps the configuration asks for."""

    @abstractmethod
    def checkpoint_path(self) -> Path:
        """Where this training's checkpoint lives."""

    @abstractmethod
    def start_run(self) -> None:
        """Rank 0, in a new MLflow run: log configuration, data and validation."""

    @abstractmethod
    def optimize_step(self, step: int) -> dict[str, float]:
        """One optimisation step at global ``step``; returns the scalars to log."""

    @abstractmethod
    def validate(self, step: int) -> None:
        """Rank 0: evaluate on the held-out data and log it."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the step, run id and key."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    @abstractmethod
    def finish(self, steps: int, completed: bool, resumed_from: int | None) -> Any:
        """Rank 0, run still open: register the model; returns the training's result."""

    def progress_postfix(self, logs: dict[str, float], step: int) -> dict[str, str]:
        """What the progress bar shows beside the step count."""
        return {}

    def phases(self) -> list[tuple[str, int]]:
        """``(name, end step)`` of phases whose steps cost differently; the bar's time left is
        estimated per phase from its own steps (:class:`training.progress.PhaseEta`)."""
        return [(self.name, self.total_steps)]

    # --- the recipe --------------------------------------------------------------------------

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def raise_from_rank0(self, error: Exception | None) -> None:
        """Raise rank 0's ``error`` (None: nothing) on every rank: one rank raising alone would
        leave the others waiting in DDP's next collective."""
        error = self.broadcast(error)
        if error is not None:
            raise error

    def resume(self, max_steps: int | None) -> tuple[int, int | None, int]:
        """Load this training's checkpoint if there is one: ``(start step, resumed from, stop step)``."""
        start, resumed_from = 0, None
        path = self.checkpoint_path()
        if path.is_file():
            state = torch.load(path, map_location=self.device, weights_only=True)
            if state.get("key") != self.key:
                raise InputError(f"checkpoint {path} belongs to another configuration or data set")
            self.load_state(state)
            torch.set_rng_state(state["torch_rng"].cpu())
            start, self.run_id, resumed_from = int(state["step"]), state["run_id"], int(state["step"])
        return start, resumed_from, self._stop(start, max_steps)

    def _stop(self, start: int, max_steps: int | None) -> int:
        if max_steps is not None and max_steps <= start:
            raise InputError(
                f"--max-steps {max_steps} is not beyond the checkpoint's step {start}" if start else "--max-steps must be at least 1"
            )
        return min(self.total_steps, max_steps) if max_steps is not None else self.total_steps

    def _open_run(self) -> None:
        configure_tracking()
        mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.MlflowClient(), self.experiment_name))
        if self.run_id is not None:
            mlflow.start_run(run_id=self.run_id)
        else:
            mlflow.start_run(run_name=self.run_name())
            self.start_run()
        self.run_id = mlflow.active_run().info.run_id
        self.buffer = MetricBuffer(self.run_id)

    def run_name(self) -> str:
        return self.name

    def save(self, step: int) -> None:
        """Rank 0: write the checkpoint of ``step``."""
        save_checkpoint(
            self.checkpoint_path(),
            {"key": self.key, "step": step, "run_id": self.run_id, "torch_rng": torch.get_rng_state(), **self.state()},
        )

    def fit(self, *, max_steps: int | None = None, max_seconds: float | None = None, resume: bool = True, progress: bool = False) -> Any:
        """Setup → resume → optimise/validate/save until the last step → register.

        ``max_steps`` stops at that global step and ``max_seconds`` after that long (the
        checkpoint stays, so a later call continues the same run); ``resume`` continues from
        this training's checkpoint when there is one.
        """
        try:
            self.setup()
            if resume:
                start, resumed_from, stop = self.resume(max_steps)
            else:
                start, resumed_from, stop = 0, None, self._stop(0, max_steps)
            if self.rank == 0:
                self._open_run()
            self.run_id = self.broadcast(self.run_id)
            bar = eta = None
            if progress and self.rank == 0:
                from tqdm import tqdm

                # tqdm's own "remaining" extrapolates one rate over every phase: replaced by the
                # per-phase estimate in the postfix.
                bar = tqdm(total=stop, initial=start, desc=self.name, unit="step", dynamic_ncols=True,
                           bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
                eta = PhaseEta(self.phases())
            deadline = time.monotonic() + max_seconds if max_seconds is not None else None
            step = start
            while step < stop:
                began = time.perf_counter()
                logs = self.optimize_step(step)
                if eta is not None:
                    eta.add(step, time.perf_counter() - began)
                done = step = step + 1
                if deadline is not None and self.broadcast(time.monotonic() > deadline):
                    stop = done
                if self.rank != 0:
                    continue
                self.buffer.add(logs, done)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({**self.progress_postfix(logs, done), "phase": eta.phase_of(done - 1),
                                     "left": eta.describe(done, stop)})
                if done % self.eval_every == 0 or done == stop:
                    self.buffer.flush()
                    self.validate(done)
                if done % self.checkpoint_every == 0 or done == stop:
                    self.buffer.flush()
                    self.save(done)
            if bar is not None:
                bar.close()
            result = None
            if self.rank == 0:
                self.buffer.flush()
                completed = stop >= self.total_steps
                result = self.finish(stop, completed, resumed_from)
                mlflow.set_tags({"semqa.completed": str(completed).lower(), "semqa.steps": str(stop)})
                mlflow.end_run()
                if completed:
                    shutil.rmtree(self.checkpoint_path().parent, ignore_errors=True)
            return self.broadcast(result)
        finally:
            if self.rank == 0 and mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()
