"""The learned segmenter end to end: metrics, annotations, training, registry, fine-tuning, analyze.

One tiny U-Net is trained once for the module (a few dozen steps on CPU) into a fresh MLflow
store; the tests then load, promote, fine-tune and analyze with it.
"""

from __future__ import annotations

import json
import pickle

import mlflow
import numpy as np
import pytest
import tifffile
from mlflow_store import empty_store
from skimage.measure import find_contours

from semqa.errors import CheckFailed, InputError
from semqa.io.images import write_image
from semqa.particles.annotations import load_annotated
from semqa.particles.learned import load_segmenter
from semqa.particles.matching import score_image, score_set
from semqa.registry.lineage import LineageBroken, trace_result
from semqa.registry.store import SEGMENTER_MODEL_NAME
from semqa.synth.scenes import SynthConfig, render_scene, scan_scene

TINY = {"model": {"num_feat": 4, "depth": 2}, "patch_size": 64, "batch_size": 4, "num_threads": 1}


def _user_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 'user micrograph': the default synthetic family (bright rims, 30 px particles)."""
    config = SynthConfig(size_px=256)
    rng = np.random.default_rng(seed)
    scene = render_scene(config, rng)
    hr, _ = scan_scene(scene, config, rng)
    return hr, scene.labels


def _one_pixel_mask(labels: np.ndarray) -> np.ndarray:
    """Binary mask whose touching particles are separated by one-pixel background lines."""
    mask = labels > 0
    for axis in (0, 1):
        shifted = np.roll(labels, 1, axis=axis)
        mask &= ~((shifted > 0) & (shifted != labels) & (labels > 0) & (shifted < labels))
    return (mask * 255).astype(np.uint8)


def _labelme(labels: np.ndarray) -> dict:
    shapes = []
    for lab in range(1, int(labels.max()) + 1):
        own = np.pad(labels == lab, 1)
        if not own.any():
            continue
        contour = max(find_contours(own.astype(float), 0.5), key=len) - 1
        shapes.append({"label": "particle", "shape_type": "polygon", "points": contour[:, ::-1].tolist()})
    return {"shapes": shapes, "imageHeight": labels.shape[0], "imageWidth": labels.shape[1]}


def _write_user_set(folder, seeds, form: str) -> None:
    for seed in seeds:
        image, labels = _user_scene(seed)
        name = f"img{seed}"
        write_image(folder / "images" / f"{name}.tif", image, pixel_size_um=0.1)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        if form == "labels":
            tifffile.imwrite(folder / "labels" / f"{name}.tif", labels.astype(np.uint16))
        elif form == "mask":
            tifffile.imwrite(folder / "labels" / f"{name}.tif", _one_pixel_mask(labels))
        else:
            (folder / "labels" / f"{name}.json").write_text(json.dumps(_labelme(labels)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fresh store with a tiny segmenter trained on synthetic scenes (version 1)."""
    from training.segmenter.config import build_config
    from training.segmenter.train import train_segmenter

    root = tmp_path_factory.mktemp("segmenter")
    uri = f"sqlite:///{empty_store(tmp_path_factory, root / 'mlruns')}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_segmenter(build_config({**TINY, "steps": 60, "synthetic_scenes": 4, "heldout_scenes": 1, "heldout_size_px": 192}))
        _write_user_set(root / "user_train", [11, 12, 13], "labels")
        _write_user_set(root / "user_heldout", [21, 22], "labels")
        yield {"root": root, "result": result, "uri": uri}


def test_scores_are_perfect_for_the_truth_and_count_a_merge():
    _, labels = _user_scene(3)
    perfect = score_image(labels, labels, 0.1)
    assert perfect.count_rel_error == 0 and perfect.d50_rel_error == 0 and perfect.precision == perfect.recall == 1.0
    merged = labels.copy()
    a, b = 1, 2
    merged[merged == b] = a  # two particles reported as one
    score = score_image(merged, labels, 0.1)
    assert score.recall < 1.0 and score.n_pred <= score.n_true


@pytest.mark.parametrize("form", ["labels", "mask", "labelme"])
def test_annotation_forms_give_the_particles_of_the_label_image(tmp_path, form):
    _write_user_set(tmp_path, [5], form)
    (item,) = load_annotated(tmp_path)
    _, truth = _user_scene(5)
    score = score_image(item.labels, truth, 0.1)
    # One-pixel separations and polygon rasterisation shave edge pixels, nothing more.
    assert score.recall >= 0.95 and score.precision >= 0.95
    assert score.count_rel_error <= 0.05


def test_annotation_errors_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="images/ and labels/"):
        load_annotated(tmp_path)
    _write_user_set(tmp_path, [5], "labels")
    (tmp_path / "labels" / "img5.tif").unlink()
    with pytest.raises(InputError, match="no annotation for image 'img5'"):
        load_annotated(tmp_path)


def test_training_logs_a_run_and_registers_a_version(trained):
    result = trained["result"]
    assert result.model_version == "1"
    run = mlflow.MlflowClient(tracking_uri=trained["uri"]).get_run(result.run_id)
    assert run.data.tags["semqa.dataset_digest"] and run.data.params["model.num_feat"] == "4"
    assert "loss_boundary" in run.data.metrics and "heldout_recall" in run.data.metrics
    assert "heldout_classic_recall" in run.data.metrics
    mv = mlflow.MlflowClient(tracking_uri=trained["uri"]).get_model_version(SEGMENTER_MODEL_NAME, "1")
    assert mv.tags["model_kind"] == "segmenter" and mv.tags["weights_digest"] == result.weights_digest


def test_loading_never_unpickles(trained, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a segmenter")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    seg = load_segmenter(f"models:/{SEGMENTER_MODEL_NAME}/1", device="cpu")
    assert seg.ref.version == "1" and seg.ref.weights_digest == trained["result"].weights_digest
    labels = seg.segment(_user_scene(1)[0])
    assert labels.shape == (256, 256) and labels.dtype == np.int32


def test_promotion_gates_pass_and_fail_with_audit(trained, monkeypatch):
    from semqa.registry.audit import read_audit
    from semqa.registry.promotion import promote
    from semqa.registry.segmenter_gates import (
        SEGMENTER_GATES,
        SegmenterGateConfig,
        segmenter_evaluator,
    )

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(trained["root"])
    heldout = trained["root"] / "user_heldout"
    kw = dict(evaluator=segmenter_evaluator, eval_data=heldout, name=SEGMENTER_MODEL_NAME, policy=SEGMENTER_GATES)
    loose = SegmenterGateConfig(min_precision=0.0, min_recall=0.0, max_count_rel_error=100.0, max_d50_rel_error=100.0)
    entry = promote("1", "staging", "tiny model for the tests", config=loose, **kw)
    assert entry.gates_passed and entry.model_name == SEGMENTER_MODEL_NAME
    strict = SegmenterGateConfig(max_count_rel_error=1e-6, max_d50_rel_error=1e-6)
    with pytest.raises(CheckFailed, match="count_rel_error"):
        promote("1", "production", "must not pass", config=strict, **kw)
    audit = read_audit(model_name=SEGMENTER_MODEL_NAME)
    assert [e.alias for e in audit] == ["staging"]


def test_fine_tuning_on_a_few_annotated_images_improves_held_out_score(trained, monkeypatch):
    from training.segmenter.config import build_config
    from training.segmenter.train import train_segmenter

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(trained["root"])
    heldout = load_annotated(trained["root"] / "user_heldout")
    before = score_set(load_segmenter(f"models:/{SEGMENTER_MODEL_NAME}/1", device="cpu").segment, heldout)
    config = build_config({**TINY, "steps": 200, "synthetic_scenes": 0, "init_from": f"models:/{SEGMENTER_MODEL_NAME}/1"})
    result = train_segmenter(config, annotated_dir=trained["root"] / "user_train", heldout_dir=trained["root"] / "user_heldout")
    after = result.heldout

    def f1(s):
        return 2 * s.precision * s.recall / (s.precision + s.recall) if s.precision + s.recall else 0.0

    assert f1(after) > f1(before), (before, after)


def test_analyze_with_a_registered_segmenter_records_it(trained, tmp_path, monkeypatch, capsys):
    from semqa.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    image = trained["root"] / "user_heldout" / "images" / "img21.tif"
    out = tmp_path / "result.json"
    assert main(["analyze", str(image), "--segmenter", f"models:/{SEGMENTER_MODEL_NAME}/1", "--json", str(out)]) == 0
    lineage = json.loads(out.read_text())["lineage"]
    assert lineage["segmenter"]["kind"] == "learned" and lineage["segmenter"]["version"] == "1"
    # `semqa lineage` follows the segmenter as it follows the generator: version, weights, run, data, code.
    report = trace_result(out)
    steps = {link.step: link.ok for link in report.links}
    assert all(steps[s] for s in ("segmenter", "segmenter_weights", "segmenter_training_run", "segmenter_dataset", "segmenter_validation_report"))
    document = json.loads(out.read_text())
    for update, message in (
        ({"version": "99"}, "segmenter: semqa-segmenter version 99 is not in the registry"),
        ({"weights_digest": "sha256:" + "0" * 64}, "segmenter_weights: .*the result used sha256:0000"),
    ):
        edited = json.loads(json.dumps(document))
        edited["lineage"]["segmenter"].update(update)
        out.write_text(json.dumps(edited))
        with pytest.raises(LineageBroken, match=message):
            trace_result(out)
    assert main(["analyze", str(image), "--segmenter", f"models:/{SEGMENTER_MODEL_NAME}/99"]) == 2
    assert "not found" in capsys.readouterr().err


def test_working_factor_keeps_images_inside_the_range_unscaled():
    from semqa.particles.archs import SegmenterConfig
    from semqa.particles.learned import working_factor

    ranged = SegmenterConfig(working_diameter_px=8, working_diameter_max_px=96)
    assert working_factor(10.0, ranged) == 1.0
    assert working_factor(96.0, ranged) == 1.0
    assert working_factor(4.0, ranged) == pytest.approx(2.0)
    assert working_factor(192.0, ranged) == pytest.approx(0.5)
    fixed = SegmenterConfig()  # one working size, as the first models
    assert working_factor(12.0, fixed) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="working_diameter_max_px"):
        SegmenterConfig(working_diameter_px=24, working_diameter_max_px=12)


def test_inference_network_folds_batch_norm_and_matches_the_trained_network():
    import torch

    from semqa.particles.archs import SegmenterConfig, build_segmenter
    from semqa.particles.learned import inference_network

    torch.manual_seed(0)
    net = build_segmenter(SegmenterConfig(num_feat=4, depth=2))
    net.train()
    net(torch.randn(4, 1, 32, 32))  # moves the batch-norm running statistics off their defaults
    net.eval()
    fused = inference_network(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is left as it was
    x = torch.randn(1, 1, 48, 64)
    with torch.inference_mode():
        expected = net(x)
        got = fused(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("source", ["randomized", "agglomerates", "families", "facets"])
def test_scene_mix_sources_render_with_exact_labels(source):
    from training.segmenter.scenes import SceneMix, mixed_scene

    mix = SceneMix(**{"randomized": 0.0, source: 1.0, "lr_fraction": 1.0, "databar_fraction": 1.0})
    image, labels, what = mixed_scene(mix, 3, (0,), 128, (8.0, 20.0))
    assert what == {"source": source, "lr": source in ("randomized", "families"), "databar": True}
    assert image.shape == labels.shape and image.dtype == np.float32
    assert labels.max() > 0 and np.isfinite(image).all()
    # The data bar's pixels belong to no particle: some whole rows or columns at an edge are background.
    edges = [labels[:8].max(), labels[-8:].max(), labels[:, :8].max(), labels[:, -8:].max()]
    assert min(edges) == 0


def test_default_scene_mix_renders_the_randomized_scenes_it_always_did():
    from semqa.synth.randomized import MEDIAN_ECD_RANGE_PX, synthetic_scene
    from training.segmenter.scenes import SceneMix, mixed_scene

    image, labels, what = mixed_scene(SceneMix(), 0, (5,), 96, MEDIAN_ECD_RANGE_PX)
    old_image, old_labels = synthetic_scene(np.random.default_rng(np.random.SeedSequence(0, spawn_key=(5,))), 96)
    assert what["source"] == "randomized" and not what["lr"] and not what["databar"]
    np.testing.assert_array_equal(labels, old_labels)
    np.testing.assert_array_equal(image, old_image.astype(np.float32))


def test_scene_mix_without_sources_is_refused():
    from training.segmenter.config import build_config

    with pytest.raises(InputError, match="every source weight is 0"):
        build_config({"scene_mix": {"randomized": 0}})
    with pytest.raises(InputError, match="scene_mix"):
        build_config({"scene_mix": {"bogus": 1}})


def test_shipped_segmenter_is_the_one_its_provenance_records():
    """The weights in semqa/particles/shipped/ are those provenance.json names, made by the config
    beside them, and load (without unpickling) into the architecture it records."""
    import yaml

    from semqa.particles.learned import SHIPPED_DIR
    from training.segmenter.config import build_config

    provenance = json.loads((SHIPPED_DIR / "provenance.json").read_text())
    segmenter = load_segmenter(str(SHIPPED_DIR), device="cpu")
    assert segmenter.ref.weights_digest == provenance["weights_digest"]
    recorded = build_config(provenance["config"])
    assert build_config(yaml.safe_load((SHIPPED_DIR / "train_config.yaml").read_text())) == recorded
    assert segmenter.config == recorded.model
