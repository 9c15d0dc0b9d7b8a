"""Where the MLflow tracking store and model registry live, and how their URIs are shown.

One default location, whatever folder the user stands in (README, "Models, promotion and
audit"):

1. ``MLFLOW_TRACKING_URI`` if set: a team server or any other MLflow store;
2. else the embedded SQLite store ``<semqa home>/mlruns/mlflow.db`` (artifacts beside it),
   where the semqa home is ``SEMQA_HOME`` if set, else the source checkout semqa is imported
   from (the folder holding its ``pyproject.toml``, as ``scripts/setup.sh`` installs it), else
   the per-user data folder ``$XDG_DATA_HOME/semqa`` (``~/.local/share/semqa``).

A registry needs a database store, hence SQLite rather than a folder of runs.

Store URIs may carry credentials (``http://user:PASSWORD@host``,
``postgresql://user:PASSWORD@host/db``); :func:`mask_credentials` is the one place that hides
them, and everything semqa prints, logs or records about a store goes through it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

#: Registered model name of the super-resolution generator.
MODEL_NAME = "semqa-generator"

#: Environment variable naming the semqa home (embedded store, cached evaluation sets).
HOME_ENV = "SEMQA_HOME"

#: ``scheme://user:password@`` in a URI; the password is what is masked.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/:@]*):(?P<password>[^\s/]*)@")
#: Query parameters that carry secrets (``?password=…``, ``&token=…``).
_SECRET_QUERY = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|token|secret|api_key|access_key|key)=)(?P<value>[^&\s#]*)", re.IGNORECASE)

MASK = "***"


def mask_credentials(text: str) -> str:
    """``text`` with the password of every URI in it (and secret query parameters) replaced by ``***``.

    Works on a bare URI and on a message that quotes one, so error messages from MLflow or
    SQLAlchemy can go through it too. The user name and host stay readable: they say which
    store, not how to get in.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


class CredentialFilter(logging.Filter):
    """Logging filter that masks credentials in a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_credentials(record.getMessage())
        record.args = ()
        if record.exc_info:
            # Format the traceback now, masked, and drop the live exception so no handler re-formats it.
            record.exc_text = mask_credentials(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _checkout() -> Path | None:
    """The source checkout semqa is imported from, if it is one (editable install or PYTHONPATH)."""
    root = Path(__file__).resolve().parents[2]
    project = root / "pyproject.toml"
    if project.is_file() and re.search(r'(?m)^name\s*=\s*"semqa"\s*$', project.read_text(encoding="utf-8", errors="replace")):
        return root
    return None


def semqa_home() -> Path:
    """``SEMQA_HOME``, else the source checkout, else ``$XDG_DATA_HOME/semqa`` (``~/.local/share/semqa``)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = _checkout()
    if checkout is not None:
        return checkout
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().resolve() / "semqa"


def store_dir() -> Path:
    """Folder of the embedded store (and of what semqa caches beside it, e.g. evaluation sets)."""
    return semqa_home() / "mlruns"


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the embedded SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def shown_tracking_uri() -> str:
    """:func:`tracking_uri` as it may be printed, logged or recorded: credentials masked."""
    return mask_credentials(tracking_uri())


def configure_tracking() -> str:
    """Point the MLflow client at :func:`tracking_uri` (creating the embedded folder); returns it.

    The returned URI may hold credentials: print :func:`shown_tracking_uri` instead.
    """
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(client: Any, name: str) -> str:
    """Id of experiment ``name``, created if missing; returns its id.

    MLflow gives a new experiment of a SQLite store an artifact folder under ``./mlruns`` of
    whatever folder the process stands in; semqa creates its experiments with their artifacts
    beside the database instead (``<store folder>/artifacts/<name>``), so a store is one folder
    wherever it is used from. A server store keeps the server's own artifact destination.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    uri = str(client.tracking_uri)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts" / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)
