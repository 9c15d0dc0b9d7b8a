"""Shared test set-up: keep every test off the network and out of the user's MLflow store."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


#: Test files in the order the two test workers take them up (scripts/test.sh: `--dist loadfile
#: --no-loadscope-reorder`): the longest first, so that both workers finish at about the same time
#: instead of one running a long file alone at the end. Ranked by their seconds in a loaded CI run
#: (2026-12-01); files not named follow in their usual order.
LONGEST_FIRST = (
    "test_demo.py",  # semqa demo --quick end to end (issue 15): several minutes, most of them training
    "test_validation.py", "test_service.py", "test_training.py", "test_dashboard.py", "test_databar.py",
    "test_cli_analyze.py", "test_blur.py", "test_segmentation.py", "test_agglomerates.py", "test_dashboard_browser.py",
    "test_report_layout.py", "test_censoring.py", "test_server_mode.py", "test_registry.py",
    "test_learned_segmenter.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order kept


@pytest.fixture(scope="session", autouse=True)
def semqa_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary ``SEMQA_HOME`` for the whole session: no test touches the checkout's or the user's store.

    Set in ``os.environ`` (not per test) so that servers the tests start inherit it.
    """
    home = tmp_path_factory.mktemp("semqa-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMQA_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield home


@pytest.fixture(scope="session")
def lots_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two products × 3 lots × 3 images (512 px HR, 128 px LR) from :func:`semqa.synth.scenes.make_lots`.

    Shared by the dashboard's in-process and browser tests.
    """
    from semqa.synth.scenes import ProductSpec, make_lots, synth_config

    root = tmp_path_factory.mktemp("lots")
    make_lots(
        root,
        products={"rld": ProductSpec(d50_um=3.0, gsd=1.5), "generic": ProductSpec(d50_um=3.0, gsd=1.5)},
        lots=3,
        images_per_lot=3,
        config=synth_config(size_px=512),
        seed=7,
        workers=2,  # the same files for any number of processes (make_lots' streams are per image)
    )
    return root
