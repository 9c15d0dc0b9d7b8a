"""A result record written straight into an embedded MLflow SQLite store (the fast path of records).

Importing MLflow's client and its SQLAlchemy store costs about 3 s of CPU per process
(``mlflow/__init__`` loads its GenAI, tracing and data modules; the store loads SQLAlchemy's
ORM models), while the record itself is three rows and one file: a one-image ``semqa analyze``
spent most of its time importing MLflow (issue 15). So when the store is the embedded SQLite
file, :func:`write_record` writes the run exactly as MLflow's own
``SqlAlchemyStore.create_run`` + ``log_text`` + ``set_terminated`` leave it (the same columns,
the ``mlflow.runName`` tag, the artifact at ``<experiment location>/<run id>/artifacts/...``),
with the standard library's :mod:`sqlite3`, in one transaction.

It does so only where that is known to be what MLflow would write: the database's schema
revision (``alembic_version``) is :data:`SCHEMA_REVISION`, the revision this was checked
against (``tests/test_records.py`` fails when the installed MLflow's head moves on), the
experiment exists, is active and keeps its artifacts in a local folder, and workspaces are off.
Anything else (a new store, another schema, a server) returns ``None`` and the caller records
through MLflow's client. Reading a record back (``semqa lineage``) always goes through MLflow.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

#: MLflow's schema head this writer was checked against (mlflow 3.17.x, ``mlflow.store.db.utils``).
SCHEMA_REVISION = "dc11669786a5"
#: The run tag MLflow keeps the run's name in (``mlflow.utils.mlflow_tags.MLFLOW_RUN_NAME``).
RUN_NAME_TAG = "mlflow.runName"
#: What MLflow's client stores as the user of a run created without an ``mlflow.user`` tag.
UNKNOWN_USER = "unknown"
#: MLflow's busy timeout for SQLite (``PRAGMA busy_timeout = 20000`` in ``mlflow.store.db.utils``), s.
BUSY_TIMEOUT_S = 20.0


def _local_folder(artifact_location: str | None) -> Path | None:
    """The folder of a ``file://`` artifact location, or None for any other kind."""
    if not artifact_location or not artifact_location.startswith("file://"):
        return None
    parsed = urlparse(artifact_location)
    if parsed.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parsed.path))


def _workspaces_enabled() -> bool:
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true", "yes")


def write_record(
    db_path: Path, experiment: str, run_name: str, tags: Mapping[str, str], artifact_path: str, text: str
) -> str | None:
    """Write one finished run with ``tags`` and the artifact ``artifact_path`` holding ``text``.

    Parameters
    ----------
    db_path
        The SQLite file of the store.
    experiment
        Name of the (existing, active) experiment the run belongs to.
    run_name, tags
        The run's name and tags, as ``MlflowClient.create_run(..., run_name=, tags=)`` takes them.
    artifact_path
        POSIX path of the artifact under the run's artifact root, as ``MlflowClient.log_text`` takes it.
    text
        The artifact's content (UTF-8).

    Returns
    -------
    str or None
        The run id, or None when this store is not one the fast path writes (see the module
        docstring): nothing was written, and the caller records through MLflow.

    Raises
    ------
    sqlite3.Error, OSError
        The store was recognised but the write failed (locked past the busy timeout, disk full).
    """
    if _workspaces_enabled() or not db_path.is_file():
        return None
    connection = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    written: Path | None = None
    try:
        try:
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError:
            return None  # not (yet) an MLflow database: MLflow creates or reports it
        if revision != [(SCHEMA_REVISION,)]:
            return None
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN IMMEDIATE")  # one writer, as MLflow's sessions on SQLite
        row = connection.execute(
            "SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments WHERE name = ?", (experiment,)
        ).fetchall()
        folder = _local_folder(row[0][1]) if len(row) == 1 and row[0][2] == "active" else None
        if folder is None:
            connection.execute("ROLLBACK")
            return None
        experiment_id, location = row[0][0], row[0][1]
        run_id = uuid.uuid4().hex
        now = int(time.time() * 1000)
        target = folder / run_id / "artifacts" / Path(*artifact_path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary name and renamed, so a reader never sees half a file.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, delete=False, suffix=".part") as fh:
            fh.write(text)
        os.replace(fh.name, target)
        written = target
        connection.execute(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (?, ?, 'UNKNOWN', '', '', ?, 'FINISHED', ?, ?, NULL, '', 'active', ?, ?)",
            (run_id, run_name, UNKNOWN_USER, now, now, f"{location.rstrip('/')}/{run_id}/artifacts", experiment_id),
        )
        all_tags = {**tags, RUN_NAME_TAG: tags.get(RUN_NAME_TAG, run_name)}
        connection.executemany(
            "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", [(k, v, run_id) for k, v in all_tags.items()]
        )
        connection.execute("COMMIT")
        written = None
        return run_id
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if written is not None:
            written.unlink(missing_ok=True)
        raise
    finally:
        connection.close()
