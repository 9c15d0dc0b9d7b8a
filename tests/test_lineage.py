"""Lineage of a real result end to end, and the chain breaking where it should.

A tiny generator is trained on validated synthetic pairs (``training.train``), promoted to
production, used by ``semqa.analysis.analyze`` on LR micrographs, and the result JSON is
traced back: input digests → model version and alias → weights → training run → data set
and validation report → code.
"""

from __future__ import annotations

import json
import shutil

import pytest

from registry_support import promoted_template, trained_template, use_copy
from semqa.cli import main
from semqa.errors import InputError
from semqa.registry.lineage import LineageBroken, trace_result, trace_version
from semqa.registry.records import record_result

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return trained_template(tmp_path_factory)


@pytest.fixture
def production(template, tmp_path_factory, tmp_path, monkeypatch):
    """A store copy with version 1 promoted to production (staging first), and a folder of input images."""
    use_copy(promoted_template(tmp_path_factory), tmp_path, monkeypatch)
    images = tmp_path / "images"
    shutil.copytree(template["eval"] / "lr", images)
    return {**template, "images": images, "tmp": tmp_path}


def _analyze(images, out, sr: bool = True):
    from semqa.analysis import analyze
    from semqa.io.images import list_images, read_image
    from semqa.sr.inference import load_upscaler

    upscaler = load_upscaler(device="cpu") if sr else None
    result = record_result(analyze([read_image(p) for p in list_images(images)], upscaler=upscaler))
    out.write_text(result.model_dump_json(indent=2))
    return result


def test_result_traced_end_to_end(production) -> None:
    result_path = production["tmp"] / "result.json"
    result = _analyze(production["images"], result_path)
    assert result.lineage.model.alias == "production" and result.lineage.model.version == "1"
    report = trace_result(result_path, [production["images"]])
    assert report.ok
    steps = [link.step for link in report.links]
    assert steps == ["result", "input", "input", "model", "alias", "weights", "training_run", "dataset", "validation_report", "code", "segmenter", "record"]
    by_step = {link.step: link for link in report.links}
    assert by_step["alias"].details["holder"] == "1"
    assert by_step["training_run"].details["run_id"] == production["run_id"]
    assert "pretrain_steps" in by_step["training_run"].details["params"]
    assert by_step["validation_report"].details["success"] is True
    assert by_step["dataset"].details["digest"] == by_step["validation_report"].details["dataset_digest"]
    assert by_step["code"].details["code_version"].startswith(("git:", "semqa-"))
    text = report.text()
    assert "Chain intact" in text and "training_run" in text


def test_tampered_input_breaks_the_chain(production, capsys) -> None:
    result_path = production["tmp"] / "result.json"
    _analyze(production["images"], result_path)
    victim = sorted(production["images"].iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(LineageBroken, match="broken at input: .*digest changed") as err:
        trace_result(result_path, [production["images"]])
    broken = err.value.report.broken
    assert [link.details["name"] for link in broken] == [victim.name]
    # The rest of the chain is still reported.
    assert {"model", "weights", "training_run", "code"} <= {link.step for link in err.value.report.links if link.ok}
    assert main(["lineage", str(result_path), "--images", str(production["images"])]) == 1
    captured = capsys.readouterr()
    assert "[BROKEN] input" in captured.out and "digest changed" in captured.err


def test_recorded_paths_moved_inputs_and_image_folders(production) -> None:
    result_path = production["tmp"] / "result.json"
    result = _analyze(production["images"], result_path)
    # analyze records where each input was read, so no folders are needed ...
    assert set(result.lineage.input_paths) == set(result.lineage.input_digests)
    assert trace_result(result_path).ok
    # ... until the images move: then the chain breaks unless their new folder is given.
    moved = production["images"].rename(production["tmp"] / "archive")
    with pytest.raises(LineageBroken, match="file not found .*recorded path .* is gone"):
        trace_result(result_path)
    assert trace_result(result_path, [moved]).ok
    # A result without recorded paths is traced through the folders alone.
    bare = record_result(result.model_copy(update={"lineage": result.lineage.model_copy(update={"input_paths": {}, "record": None})}))
    result_path.write_text(bare.model_dump_json())
    with pytest.raises(LineageBroken, match="no path recorded"):
        trace_result(result_path)
    assert trace_result(result_path, [production["tmp"]]).ok


def test_registry_links_break_loudly(production) -> None:
    result_path = production["tmp"] / "result.json"
    result = _analyze(production["images"], result_path)
    roots = [production["images"]]
    for update, message in (
        ({"version": "99"}, "model: semqa-generator version 99 is not in the registry"),
        ({"weights_digest": "sha256:" + "0" * 64}, "weights: .*the result used sha256:0000"),
        ({"run_id": "0" * 32}, "model: .*but the result names run 0000"),
    ):
        model = result.lineage.model.model_copy(update=update)
        edited = result.model_copy(update={"lineage": result.lineage.model_copy(update={"model": model})})
        result_path.write_text(edited.model_dump_json())
        with pytest.raises(LineageBroken, match=message):
            trace_result(result_path, roots)


@pytest.mark.parametrize(
    ("tamper", "broken", "names"),
    [
        (None, [], None),
        (lambda d: d["psd"].update(d50_um=round(d["psd"]["d50_um"] * 1.2, 3)), ["record"], "psd.d50_um changed"),
        (lambda d: d["lineage"].update(model=None), ["model", "record"], "sr: true but names no generator"),
        (lambda d: d["lineage"].pop("created_at"), ["result", "record"], "lineage.created_at removed"),
    ],
    ids=["intact", "edited-d50", "nulled-model", "removed-created-at"],
)
def test_a_tampered_sr_result_breaks_its_lineage(production, capsys, tamper, broken, names) -> None:
    result_path = production["tmp"] / "result.json"
    _analyze(production["images"], result_path)
    if tamper is not None:
        data = json.loads(result_path.read_text())
        assert data["sr"] is True
        tamper(data)
        result_path.write_text(json.dumps(data, indent=2))
    code = main(["lineage", str(result_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [link["step"] for link in report["links"] if not link["ok"]] == broken
    assert code == (1 if broken else 0)
    if names:
        assert main(["lineage", str(result_path)]) == 1
        captured = capsys.readouterr()
        assert names in captured.out and captured.err.startswith(f"semqa: lineage of result {result_path} broken at {broken[0]}")


def test_result_without_sr_and_bad_files(production) -> None:
    result_path = production["tmp"] / "plain.json"
    _analyze(production["images"], result_path, sr=False)
    report = trace_result(result_path, [production["images"]])
    assert [link.step for link in report.links] == ["result", "input", "input", "model", "segmenter", "record"]
    with pytest.raises(InputError, match="no such result file"):
        trace_result(production["tmp"] / "missing.json")
    (production["tmp"] / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="not a JSON result"):
        trace_result(production["tmp"] / "junk.json")
    (production["tmp"] / "bare.json").write_text(json.dumps({"psd": {}}))
    assert main(["lineage", str(production["tmp"] / "bare.json")]) == 1


def test_version_lineage_lists_evaluations_and_audit(production, capsys) -> None:
    report = trace_version("1")
    steps = [link.step for link in report.links]
    assert steps[:6] == ["model", "weights", "training_run", "dataset", "validation_report", "code"]
    assert steps.count("evaluation") == 1 and steps.count("audit") == 2
    assert main(["models", "lineage", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["subject"] == "semqa-generator version 1"
    assert main(["models", "lineage", "42"]) == 1
    assert "[BROKEN] model" in capsys.readouterr().out
