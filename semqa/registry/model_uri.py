"""Resolving a ``models:/`` URI to a registered version and its weight files: one place for all models.

The generator (:func:`semqa.sr.inference.load_upscaler`) and the learned segmenter
(:func:`semqa.particles.learned.load_segmenter`) are registered the same way: a model version
whose run holds ``weights.safetensors`` + ``arch_config.json`` under the artifact folder named
by its ``weights_artifact`` tag, with the weights' digest in its ``weights_digest`` tag
(``training.tracking``, ``training.segmenter.train``). Both resolve ``models:/<name>@<alias>``
or ``models:/<name>/<version>`` here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from semqa.errors import InputError

#: Version tag naming the run's artifact folder with the weights and architecture JSON.
TAG_WEIGHTS_ARTIFACT = "weights_artifact"
#: Version tag with the ``sha256:`` digest of the weights file.
TAG_WEIGHTS_DIGEST = "weights_digest"
#: Version tag saying which kind of network a version is (``segmenter``; generators predate it).
TAG_MODEL_KIND = "model_kind"


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/version`` → ``(name, alias, version)``.

    Raises
    ------
    InputError
        Neither form.
    """
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias:
            return name, alias, None
    else:
        name, _, version = rest.partition("/")
        if name and version:
            return name, None, version
    raise InputError(f"model URI {uri!r} must be models:/<name>@<alias>, models:/<name>/<version> or a folder")


@dataclass(frozen=True)
class RegisteredFiles:
    """A resolved model version and the local folder its weight files were downloaded into."""

    name: str
    version: str
    alias: str | None
    run_id: str
    model_uri: str
    weights_digest: str | None
    folder: Path


@contextmanager
def registered_files(uri: str, *, what: str, kind: str | None = None, no_production_hint: str) -> Iterator[RegisteredFiles]:
    """Resolve ``uri`` in the registry in force and download its weights into a temporary folder.

    Parameters
    ----------
    uri : str
        ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
    what : str
        What the caller loads (``"generator"``, ``"segmenter"``), for the error messages.
    kind : str, optional
        Required value of the version's ``model_kind`` tag (``None``: not checked).
    no_production_hint : str
        What to do when ``@production`` is not set (e.g. "run `semqa train` and promote one").

    Yields
    ------
    RegisteredFiles
        The folder is removed when the ``with`` block ends: load the files inside it.

    Raises
    ------
    InputError
        Malformed URI, unknown model/version/alias, or a version that is not a semqa ``what``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from semqa.registry.store import configure_tracking

    name, alias, version = parse_models_uri(uri)
    configure_tracking()
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        if alias == "production":
            raise InputError(f"no production {what} registered ({uri}); {no_production_hint}") from None
        raise InputError(f"{what} {uri} not found in the registry at {mlflow.get_tracking_uri()}") from None
    artifact = mv.tags.get(TAG_WEIGHTS_ARTIFACT)
    if not artifact or not mv.run_id or (kind is not None and mv.tags.get(TAG_MODEL_KIND) != kind):
        raise InputError(f"model version {name}/{mv.version} is not a semqa {what} (no {TAG_WEIGHTS_ARTIFACT} tag or another model_kind)")
    with tempfile.TemporaryDirectory(prefix=f"semqa-{what}-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=artifact, dst_path=tmp))
        yield RegisteredFiles(
            name=name, version=str(mv.version), alias=alias, run_id=mv.run_id, model_uri=uri,
            weights_digest=mv.tags.get(TAG_WEIGHTS_DIGEST), folder=local,
        )
