"""Where the MLflow tracking store and model registry live, and the generator's name.

The embedded default is a SQLite database under ``mlruns/`` (artifacts beside it), which
a registry needs; ``MLFLOW_TRACKING_URI`` switches to a team server (DESIGN.md).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Registered model name of the super-resolution generator.
MODEL_NAME = "semqa-generator"
#: Registered model name of the learned particle segmenter (:mod:`semqa.particles.learned`).
SEGMENTER_MODEL_NAME = "semqa-segmenter"

#: Folder of the embedded store, relative to the working directory.
DEFAULT_STORE_DIR = Path("mlruns")


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the embedded SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{DEFAULT_STORE_DIR.resolve() / 'mlflow.db'}"


def configure_tracking() -> str:
    """Point the MLflow client at :func:`tracking_uri` (creating the embedded folder)."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
