"""Training: losses, data sampling, the MLflow run, registration, resume after a kill, DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from skimage.measure import block_reduce
from skimage.metrics import structural_similarity

from mlflow_store import fresh_store, migrated_template
from semqa.errors import CheckFailed, InputError
from semqa.sr.inference import load_upscaler
from semqa.registry.store import MODEL_NAME
from semqa.synth.scenes import SynthConfig, make_pairs
from training.config import TrainConfig, demo_config
from semqa.sr.pairs import Pair
from validation import validate_pairs
from training.data import PatchSampler, split_pairs
from training.losses import (
    charbonnier_loss,
    feature_matching_loss,
    gradient_loss,
    relativistic_d_loss,
    relativistic_g_loss,
    ssim,
)
from training.train import CHECKPOINT_FILE, train

REPO = Path(__file__).resolve().parent.parent


# --- losses ----------------------------------------------------------------------------


def test_ssim_matches_skimage() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((40, 48))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    expected = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    got = ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None]).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_pixel_and_gradient_losses() -> None:
    x = torch.rand(2, 1, 16, 16)
    assert charbonnier_loss(x, x).item() == pytest.approx(1e-3)
    assert charbonnier_loss(x, x + 0.5).item() == pytest.approx(0.5, rel=1e-4)
    assert gradient_loss(x, x).item() == 0.0
    assert gradient_loss(x, x + 0.3).item() == pytest.approx(0.0, abs=1e-7)  # constant offset has no edges
    assert gradient_loss(x, torch.roll(x, 2, dims=-1)).item() > 0.01


def test_relativistic_losses_reward_the_right_side() -> None:
    high, low = torch.full((4, 1, 8, 8), 3.0), torch.full((4, 1, 8, 8), -3.0)
    # A discriminator that rates real above fake has a small loss; the generator a large one.
    assert relativistic_d_loss(high, low).item() < 0.01
    assert relativistic_g_loss(high, low).item() > 5.0
    assert relativistic_d_loss(low, high).item() > 5.0
    same = torch.zeros(4, 1, 8, 8)
    assert relativistic_d_loss(same, same).item() == pytest.approx(np.log(2))
    feats = [torch.rand(2, 4, 8, 8), torch.rand(2, 2, 16, 16)]
    assert feature_matching_loss(feats, feats).item() == 0.0
    assert feature_matching_loss(feats, [f + 1 for f in feats]).item() == pytest.approx(1.0)


# --- data ------------------------------------------------------------------------------


def _pair(name: str, hr: np.ndarray, s: int) -> Pair:
    return Pair(name, hr, block_reduce(hr, (s, s), np.mean).astype(np.float32), 0.1, "sha256:" + name, "sha256:x")


def test_patches_stay_aligned_under_augmentation() -> None:
    rng = np.random.default_rng(0)
    s = 4
    pairs = [_pair(f"p{i}", rng.random((96 + 8 * i, 128)).astype(np.float32), s) for i in range(3)]
    sampler = PatchSampler(pairs, s, 32)
    lr, hr = sampler.batch(16, seed=0, step=5)
    assert lr.shape == (16, 1, 8, 8) and hr.shape == (16, 1, 32, 32)
    # LR is the block mean of HR; flips and rotations commute with block means when aligned.
    expected = torch.nn.functional.avg_pool2d(hr, s)
    torch.testing.assert_close(lr, expected, atol=1e-6, rtol=0)
    lr2, hr2 = sampler.batch(16, seed=0, step=5)
    assert torch.equal(hr, hr2) and torch.equal(lr, lr2)
    assert not torch.equal(hr, sampler.batch(16, seed=0, step=6)[1])


def test_hr_only_patches_are_synthesised_at_lr_pitch() -> None:
    from semqa.sr.degradation import DegradationConfig

    rng = np.random.default_rng(1)
    pair = Pair("a", rng.random((64, 64)).astype(np.float32), None, None, "sha256:a", None)
    deg = DegradationConfig(scale=4, dose=1e6, read_noise=0.0)
    lr, hr = PatchSampler([pair], 4, 32, deg).batch(4, seed=0, step=0)
    assert lr.shape == (4, 1, 8, 8)
    # Near-noise-free synthesis: the LR patch is close to the blurred block mean of its HR patch.
    assert (lr - torch.nn.functional.avg_pool2d(hr, 4)).abs().mean() < 0.1


def test_split_is_by_image_and_disjoint() -> None:
    pairs = [_pair(f"p{i}", np.zeros((32, 32), np.float32), 4) for i in range(10)]
    train_p, val_p = split_pairs(pairs, 0.2, 1, 8, seed=3)
    assert len(val_p) == 2 and len(train_p) == 8
    assert not {p.name for p in train_p} & {p.name for p in val_p}
    with pytest.raises(InputError, match="too few"):
        split_pairs(pairs[:1], 0.2, 1, 8, seed=0)


def test_config_yaml_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("patch_size: 30\n")
    with pytest.raises(InputError, match="patch_size"):
        TrainConfig.from_yaml(bad)
    bad.write_text("unknown_field: 1\n")
    with pytest.raises(InputError, match="unknown_field"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(InputError, match="no such config"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"generator": {"arch": "rrdbnet", "scale": 2}, "patch_size": 48, "gan_steps": 0}))
    assert TrainConfig.from_yaml(good).generator.arch == "rrdbnet"
    assert demo_config().total_steps > 0


# --- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    return migrated_template(tmp_path_factory)


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("pairs") / "pairs", 5, SynthConfig(size_px=128), seed=2)


def _tiny(**overrides) -> TrainConfig:
    base = dict(
        generator={"num_feat": 8, "num_conv": 2},
        discriminator={"num_feat": 8},
        patch_size=32,
        batch_size=2,
        pretrain_steps=4,
        gan_steps=4,
        eval_every=4,
        checkpoint_every=2,
        num_threads=1,
    )
    base.update(overrides)
    return TrainConfig.model_validate(base)


@pytest.mark.slow
def test_train_resume_and_registration(tmp_path, monkeypatch, mlflow_template, pair_dir) -> None:
    fresh_store(mlflow_template, tmp_path, monkeypatch)
    config = _tiny()
    first = train(config, pair_dir, max_steps=4)
    assert first.steps == 4 and not first.completed
    ckpt_dir = next((tmp_path / "mlruns" / "checkpoints").iterdir())
    assert (ckpt_dir / CHECKPOINT_FILE).is_file()

    with pytest.raises(InputError, match="not beyond the checkpoint"):
        train(config, pair_dir, max_steps=3)
    second = train(config, pair_dir)
    assert second.resumed_from == 4 and second.completed and second.steps == 8
    assert second.run_id == first.run_id
    assert not ckpt_dir.exists()  # a completed training leaves no checkpoint to resume

    # Same seeds, no interruption: identical weights (repeatable on CPU, exact resume).
    straight = train(config.model_copy(update={"checkpoint_dir": tmp_path / "other"}), pair_dir, resume=False)
    assert straight.weights_digest == second.weights_digest
    assert straight.run_id != second.run_id

    client = mlflow.MlflowClient()
    run = client.get_run(second.run_id)
    assert run.data.params["generator.num_feat"] == "8"
    assert run.data.params["pretrain_steps"] == "4"
    assert run.data.tags["semqa.code_version"]
    steps = [m.step for m in client.get_metric_history(second.run_id, "loss_g")]
    assert sorted(steps) == list(range(1, 9))
    assert [m.step for m in client.get_metric_history(second.run_id, "loss_d")] == [5, 6, 7, 8]
    for key in ("val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim", "val_recall", "val_precision"):
        assert key in run.data.metrics, key
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source
    # One data set digest: the one training records is the one its validation report carries.
    assert run.data.tags["semqa.dataset_digest"] == validate_pairs(pair_dir, report_dir=tmp_path / "v").dataset_digest
    artifacts = {a.path for a in client.list_artifacts(second.run_id)}
    assert {"environment", "generator", "validation"} <= artifacts

    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    mv = client.get_model_version(MODEL_NAME, second.model_version)
    assert len(versions) == 3 and mv.run_id == second.run_id
    assert mv.tags["train_run_id"] == second.run_id
    assert mv.tags["dataset_digest"] == run.data.tags["semqa.dataset_digest"]
    assert mv.tags["validation_report"] == f"runs:/{second.run_id}/validation"
    assert mv.tags["weights_digest"] == second.weights_digest
    assert mv.description

    # Loading resolves alias → version → run and checks the weights digest.
    client.set_registered_model_alias(MODEL_NAME, "production", second.model_version)
    up = load_upscaler()
    assert up.ref.version == second.model_version and up.ref.run_id == second.run_id
    assert up.ref.weights_digest == second.weights_digest
    assert up.upscale(np.full((20, 24), 0.3, np.float32)).shape == (80, 96)
    # The MLflow model is also a python_function (for BentoML's import).
    pyfunc = mlflow.pyfunc.load_model(mv.source)
    out = pyfunc.predict(np.full((2, 1, 12, 20), 0.3, np.float32))
    assert out.shape == (2, 1, 48, 80)


@pytest.mark.slow
def test_resume_after_kill(tmp_path, monkeypatch, mlflow_template, pair_dir) -> None:
    fresh_store(mlflow_template, tmp_path, monkeypatch)
    config = _tiny(pretrain_steps=5000, gan_steps=0, checkpoint_every=3, eval_every=10_000)
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    log = (tmp_path / "train.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "semqa.cli", "train", "--data", str(pair_dir), "--config", str(cfg_file)],
        # stderr to a file: a pipe nobody reads until the end would block the training once full.
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=log,
    )
    ckpt_root = tmp_path / "mlruns" / "checkpoints"
    # Start-up (imports, pair validation, the MLflow run) and three steps: ~40 s on an idle 2-core
    # machine, over 120 s when the cores are shared with other jobs (seen with two test workers).
    deadline = time.monotonic() + 420
    try:
        while not any(ckpt_root.glob(f"*/{CHECKPOINT_FILE}")):
            assert proc.poll() is None, (tmp_path / "train.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)  # SIGKILL cannot be ignored: the kernel reaps it at once
        log.close()
    state = torch.load(next(ckpt_root.glob(f"*/{CHECKPOINT_FILE}")), weights_only=True)
    killed_at = int(state["step"])
    result = train(config, pair_dir, max_steps=killed_at + 2)
    assert result.resumed_from == killed_at and result.run_id == state["run_id"]
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "loss_g")
    assert {m.step for m in history} >= set(range(1, killed_at + 3))


@pytest.mark.slow
def test_invalid_data_is_refused(tmp_path, monkeypatch, mlflow_template) -> None:
    fresh_store(mlflow_template, tmp_path, monkeypatch)
    data = make_pairs(tmp_path / "pairs", 3, SynthConfig(size_px=128), seed=5)
    from semqa.io.images import write_image

    write_image(data / "lr" / "synth_0001.tif", np.zeros((20, 20), np.float32), pixel_size_um=0.4)
    with pytest.raises(CheckFailed, match="failed validation"):
        train(_tiny(), data)
    assert mlflow.search_runs(search_all_experiments=True).empty


@pytest.mark.slow
def test_hr_only_mode(tmp_path, monkeypatch, mlflow_template, pair_dir) -> None:
    fresh_store(mlflow_template, tmp_path, monkeypatch)
    result = train(_tiny(pretrain_steps=3, gan_steps=1, register_model=False), pair_dir / "hr", hr_only=True)
    assert result.completed and result.model_version is None
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["semqa.data_mode"] == "hr-only"
    assert "val_psnr" in run.data.metrics


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, monkeypatch, mlflow_template, pair_dir) -> None:
    uri = fresh_store(mlflow_template, tmp_path, monkeypatch)
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(_tiny(pretrain_steps=2, gan_steps=2).model_dump(mode="json")))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "semqa.cli", "train", "--data", str(pair_dir), "--config", str(cfg_file)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run id:") == 1  # only rank 0 reports
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    assert runs.iloc[0]["tags.semqa.world_size"] == "2"
    assert runs.iloc[0]["metrics.loss_d"] > 0
    versions = mlflow.MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
    assert len(versions) == 1


def test_evaluate_generator_perfect_sr_has_no_psd_error() -> None:
    from skimage.draw import disk

    from semqa.sr.archs import GeneratorConfig, build_generator
    from semqa.evaluation import evaluate_generator

    lr = np.full((64, 64), 0.2, np.float32)
    for (r, c), rad in zip([(14, 14), (14, 46), (44, 20), (46, 48)], [5, 6, 7, 8]):
        lr[disk((r, c), rad)] = 0.7
    hr = np.kron(lr, np.ones((4, 4), np.float32))
    g = build_generator(GeneratorConfig(scale=4, num_feat=8, num_conv=1))
    for p in g.body[-2].parameters():  # zero residual: SR is the nearest upscale, i.e. exactly HR
        torch.nn.init.zeros_(p)
    m = evaluate_generator(g, [Pair("a", hr, lr, 0.1, "sha256:a", "sha256:b")])
    assert m.n_particles_hr == m.n_particles_sr == 4
    assert m.d50_rel_error == 0.0 and m.d10_rel_error == 0.0 and m.wasserstein == 0.0
    assert m.recall == 1.0 and m.precision == 1.0
    assert m.psnr == float("inf") and m.ssim == pytest.approx(1.0)
    assert m.bicubic_psnr < 40 and m.size_unit == "um"
    assert "val_psnr" not in m.mlflow_metrics()  # infinite values are not logged


def test_train_takes_the_pair_sets_pixel_sizes(tmp_path, monkeypatch, mlflow_template, pair_dir, capsys) -> None:
    # PNG pairs carry no pixel size: validation refuses them until the caller states both,
    # the sizes reach validation (checked against the scale) and are logged with the run.
    from PIL import Image

    from semqa.cli import main
    from semqa.io.images import read_image

    fresh_store(mlflow_template, tmp_path, monkeypatch)
    pngs = tmp_path / "pngs"
    for sub in ("hr", "lr"):
        (pngs / sub).mkdir(parents=True)
        for path in sorted((pair_dir / sub).iterdir()):
            gray = (read_image(path).image * 255).round().astype(np.uint8)
            Image.fromarray(gray).save(pngs / sub / f"{path.stem}.png")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(_tiny(pretrain_steps=2, gan_steps=0, eval_every=2, register_model=False).model_dump(mode="json")))
    base = ["train", "--data", str(pngs), "--config", str(cfg)]
    assert main(base) == 1
    assert "pixel_size" in capsys.readouterr().err
    assert main([*base, "--hr-pixel-size", "0.1", "--lr-pixel-size", "0.8"]) == 1
    assert "pixel_size_scale" in capsys.readouterr().err
    assert main([*base, "--hr-pixel-size", "-1"]) == 2
    assert main([*base, "--hr-pixel-size", "0.1", "--lr-pixel-size", "0.4"]) == 0
    (run,) = [r for _, r in mlflow.search_runs(search_all_experiments=True).iterrows()]
    assert run["params.hr_pixel_size_um"] == "0.1" and run["params.lr_pixel_size_um"] == "0.4"
    assert run["status"] == "FINISHED"


@pytest.mark.slow
def test_a_callers_validation_is_recorded_not_repeated(tmp_path, monkeypatch, mlflow_template, pair_dir) -> None:
    # The demo validates its pairs, then trains on them: the run records that report, and the
    # pairs are not measured again; a report of other files is refused, one of another
    # configuration is not used.
    import shutil

    import training.train as train_module
    from semqa.registry.lineage import RUN_TAG_DATASET_DIGEST
    from training.train import validation_config

    fresh_store(mlflow_template, tmp_path, monkeypatch)
    config = _tiny(pretrain_steps=2, gan_steps=0, eval_every=2, register_model=False)
    report = validate_pairs(pair_dir, config=validation_config(config), report_dir=tmp_path / "report")
    assert report.success
    calls = []
    real = train_module.validate_pairs
    monkeypatch.setattr(train_module, "validate_pairs", lambda *a, **k: calls.append(a) or real(*a, **k))

    result = train(config, pair_dir, validation=report)
    assert calls == []
    run = mlflow.get_run(result.run_id)
    assert run.data.tags[RUN_TAG_DATASET_DIGEST] == report.dataset_digest

    other = tmp_path / "other"
    shutil.copytree(pair_dir, other)
    (other / "hr" / sorted(p.name for p in (other / "hr").iterdir())[0]).unlink()
    (other / "lr" / sorted(p.name for p in (other / "lr").iterdir())[0]).unlink()
    stale = report.model_copy(update={"pair_dir": other})
    with pytest.raises(InputError, match="other files"):
        train(config, other, validation=stale)

    elsewhere = report.model_copy(update={"config": validation_config(config).model_copy(update={"scale": 2})})
    train(config, pair_dir, validation=elsewhere, resume=False)
    assert len(calls) == 1
