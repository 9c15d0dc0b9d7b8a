"""Analysis over a process pool gives exactly the serial result (issue 15)."""

import numpy as np
import pytest

from semqa.analysis import AnalysisConfig, analyze, compare
from semqa.cli import main
from semqa.errors import InputError
from semqa.io.images import ImagePath, read_image, write_image
from semqa.pool import map_ordered, resolve_workers
from semqa.synth.scenes import SynthConfig, render_pair

CONFIG = AnalysisConfig(n_bootstrap=50)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five small HR scenes (16-bit TIFF with pixel size) in two lot folders."""
    root = tmp_path_factory.mktemp("lots")
    config = SynthConfig(size_px=256)
    rng = np.random.default_rng(11)
    paths = []
    for i in range(5):
        hr, _, _ = render_pair(config, rng)
        lot = root / ("a" if i < 3 else "b")
        paths.append(write_image(lot / f"img{i}.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16))
    return root, paths


def _without_timestamps(result) -> dict:
    """The result without what differs between any two runs: creation time and record pointer."""
    data = result.model_dump(mode="json")
    for lineage in [data["lineage"]] + [lot["lineage"] for side in ("reference", "test") for lot in data.get(side, {}).values()]:
        lineage.pop("created_at")
        lineage.pop("record")
    return data


def test_parallel_analyze_equals_serial(images):
    _, paths = images
    serial = analyze([read_image(p) for p in paths], CONFIG, workers=1)
    from_files = analyze([ImagePath(p) for p in paths], CONFIG, workers=2)
    from_arrays = analyze([read_image(p) for p in paths], CONFIG, workers=3)
    assert serial.psd.n > 20
    assert _without_timestamps(from_files) == _without_timestamps(serial)
    assert _without_timestamps(from_arrays) == _without_timestamps(serial)


def test_parallel_compare_equals_serial_and_reports_progress(images):
    _, paths = images
    ref = {"a": [ImagePath(p) for p in paths[:3]], "b": [ImagePath(p) for p in paths[3:]]}
    test = {"c": [ImagePath(p) for p in paths[1:4]]}
    seen: list[tuple[int, int]] = []
    parallel = compare(ref, test, CONFIG, workers=2, progress=lambda d, t: seen.append((d, t)))
    serial = compare(ref, test, CONFIG, workers=1)
    assert _without_timestamps(parallel) == _without_timestamps(serial)
    assert seen == [(i, 8) for i in range(1, 9)]
    assert list(parallel.reference) == ["a", "b"] and [im.name for im in parallel.test["c"].images] == [
        "img1.tif", "img2.tif", "img3.tif"]


def test_worker_input_error_reaches_the_caller(images, tmp_path):
    _, paths = images
    unsized = tmp_path / "unsized.png"
    write_image(unsized, read_image(paths[0]).image)  # PNG without a sidecar: no pixel size
    with pytest.raises(InputError, match="pixel size unknown"):
        analyze([ImagePath(paths[0]), ImagePath(unsized), ImagePath(paths[1])], CONFIG, workers=2)


def test_cli_workers_option(images, tmp_path, capsys):
    root, _ = images
    outs = []
    for n in ("1", "2"):
        outs.append(tmp_path / f"w{n}.json")
        assert main(["analyze", str(root / "a"), str(root / "b"), "--workers", n, "--json", str(outs[-1])]) == 0
    from semqa.analysis import AnalysisResult

    a, b = (AnalysisResult.model_validate_json(p.read_text()) for p in outs)
    assert _without_timestamps(a) == _without_timestamps(b)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(root / "a"), "--workers", "0"])
    assert exc.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_map_ordered_keeps_order_and_resolve_workers_bounds():
    assert list(map_ordered(abs, [-3, 1, -2, 5, -4], 2)) == [3, 1, 2, 5, 4]
    assert resolve_workers(8, 3) == 3 and resolve_workers(None, 1) == 1 and resolve_workers(1, 10) == 1
    with pytest.raises(ValueError):
        resolve_workers(0, 4)
