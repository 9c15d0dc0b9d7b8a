"""A migrated MLflow SQLite store, made once per test session and copied per test.

Migrating a fresh SQLite database takes seconds, so tests copy one file.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def migrated_db(folder: Path) -> Path:
    """Create and migrate an MLflow SQLite database in ``folder``; returns its path."""
    import mlflow

    db = folder / "mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client.search_experiments()
    client.search_registered_models()
    return db


def migrated_template(tmp_path_factory) -> Path:
    """The session's migrated database (made on first use, ~5 s of CPU); copy it, never write to it.

    Every module that wants an empty store copies this one file instead of migrating its own.
    """
    folder = tmp_path_factory.getbasetemp() / "mlflow-migrated"
    marker = folder / "done"
    if not marker.is_file():
        folder.mkdir(exist_ok=True)
        migrated_db(folder)
        marker.write_text("migrated")
    return folder / "mlflow.db"


def empty_store(tmp_path_factory, folder: Path) -> Path:
    """A copy of :func:`migrated_template` as ``folder/mlflow.db`` (what :func:`migrated_db` makes); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(migrated_template(tmp_path_factory), folder / "mlflow.db"))


def fresh_store(template: Path, workdir: Path, monkeypatch) -> str:
    """Copy ``template`` to ``workdir/mlruns/mlflow.db``, chdir there, point MLflow (and ``SEMQA_HOME``) at it."""
    import mlflow

    store = workdir / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEMQA_HOME", str(workdir))  # checkpoints and evaluation sets beside this store
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
