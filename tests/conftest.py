"""Shared test set-up: keep every test off the network and out of the user's MLflow store."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


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
