"""Packaging the served models: import into the BentoML model store, build a Bento.

``semqa service build`` resolves the production generator from the MLflow registry,
copies its weights (safetensors) and architecture (JSON) into the BentoML model store
with the registry lineage as labels and metadata, and builds a Bento whose service reads
the model from there, so the Bento serves without MLflow. The production learned segmenter,
where one is registered, is packaged the same way (:func:`import_segmenter`) and serves
``segmenter=learned``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from semqa.errors import InputError, SemqaError
from semqa.components import ARCH_FILE, WEIGHTS_FILE
from semqa.sr.inference import TAG_WEIGHTS_ARTIFACT, Upscaler, load_upscaler
from semqa.io.digests import file_digest
from semqa.registry.store import MODEL_NAME, SEGMENTER_MODEL_NAME
from semqa.results import ModelRef, SegmenterRef

if TYPE_CHECKING:
    import bentoml

    from semqa.particles.learned import LearnedSegmenter

#: Name of the generator in the BentoML model store.
BENTO_MODEL_NAME = MODEL_NAME
#: Bento argument naming the packaged model's tag (``bentoml build --arg bento_model=TAG``).
BENTO_MODEL_ARG = "bento_model"
#: Bento argument naming the packaged learned segmenter's tag (absent: none packaged).
BENTO_SEGMENTER_ARG = "bento_segmenter"
#: Metadata key holding the registry's :class:`ModelRef` (or :class:`SegmenterRef`) of a packaged model.
REF_METADATA_KEY = "model_ref"
#: Project root: where ``bentofile.yaml`` lies.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bento_version(ref: ModelRef | SegmenterRef) -> str:
    digest = (ref.weights_digest or "").removeprefix("sha256:")[:12]
    return f"v{ref.version or 'local'}-{digest}"


def _fetch_files(ref: ModelRef | SegmenterRef, dst: Path) -> None:
    """Copy the weights and architecture that ``ref`` names into ``dst``."""
    if ref.run_id is None:  # a local folder given as model URI
        src = Path(ref.model_uri or "")
        for name in (WEIGHTS_FILE, ARCH_FILE):
            shutil.copy2(src / name, dst / name)
        return
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(ref.name, ref.version)
    artifact = mv.tags[TAG_WEIGHTS_ARTIFACT]
    local = Path(mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=artifact, dst_path=str(dst / "_dl")))
    for name in (WEIGHTS_FILE, ARCH_FILE):
        shutil.move(local / name, dst / name)
    shutil.rmtree(dst / "_dl")


def import_model(model_uri: str | None = None) -> bentoml.Model:
    """Import the generator ``model_uri`` names into the BentoML model store.

    Parameters
    ----------
    model_uri : str, optional
        As for :func:`semqa.sr.inference.load_upscaler`; default ``SEMQA_MODEL_URI`` or
        ``models:/semqa-generator@production``.

    Returns
    -------
    bentoml.Model
        The stored model, tagged ``semqa-generator:v<version>-<digest prefix>``; an import of
        the same version and weights returns the model already stored.
    """
    ref = load_upscaler(model_uri, device="cpu").ref  # resolves the alias and checks the digest
    return _store(ref, BENTO_MODEL_NAME)


def _store(ref: ModelRef | SegmenterRef, bento_name: str) -> bentoml.Model:
    """The BentoML model ``bento_name:v<version>-<digest prefix>`` holding ``ref``'s files (made once)."""
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{bento_name}:{_bento_version(ref)}"
    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    labels = {k: str(v) for k, v in ref.model_dump(include={"name", "version", "alias", "run_id"}).items() if v is not None}
    with bentoml.models.create(tag, labels=labels, metadata={REF_METADATA_KEY: ref.model_dump(mode="json")}) as model:
        folder = Path(model.path)
        _fetch_files(ref, folder)
        if file_digest(folder / WEIGHTS_FILE) != ref.weights_digest:
            raise InputError(f"downloaded weights of {tag} differ from the registered digest {ref.weights_digest}")
    return model


def import_segmenter(uri: str = "learned") -> bentoml.Model | None:
    """Import the learned segmenter ``uri`` names (default the production one) into the BentoML model store.

    Returns ``None`` when ``uri`` is ``learned`` and no production segmenter is registered:
    the Bento then serves the classic pipeline only, and ``segmenter=learned`` is a 4xx.
    """
    from semqa.particles.learned import LEARNED_URI, load_segmenter

    try:
        ref = load_segmenter(uri, device="cpu").ref  # resolves the alias and checks the digest
    except InputError:
        if uri in ("learned", LEARNED_URI):
            return None
        raise
    return _store(ref, SEGMENTER_MODEL_NAME)


def segmenter_from_bento_model(model: bentoml.Model) -> LearnedSegmenter:
    """The :class:`~semqa.particles.learned.LearnedSegmenter` stored by :func:`import_segmenter` (no MLflow)."""
    from semqa.particles.learned import LearnedSegmenter

    ref = SegmenterRef.model_validate(model.info.metadata[REF_METADATA_KEY])
    return LearnedSegmenter.from_files(model.path_of(WEIGHTS_FILE), model.path_of(ARCH_FILE), ref=ref)


def upscaler_from_bento_model(model: bentoml.Model, **tiling) -> Upscaler:
    """The :class:`Upscaler` of a generator stored by :func:`import_model` (no MLflow needed)."""
    ref = ModelRef.model_validate(model.info.metadata[REF_METADATA_KEY])
    return Upscaler.from_files(model.path_of(WEIGHTS_FILE), model.path_of(ARCH_FILE), ref=ref, **tiling)


def build_bento(model_uri: str | None = None, *, version: str | None = None) -> bentoml.Bento:
    """Import the generator (and the production segmenter, if any) and build the service's Bento from ``bentofile.yaml``.

    Returns the built :class:`bentoml.Bento`; its ``tag`` is what ``bentoml serve`` takes.
    The build runs ``bentoml build`` in a fresh process: the service module reads the
    ``bento_model`` argument when it is imported, so a process that already imported it
    (a test session, a notebook) would package the Bento without its model.
    """
    import bentoml

    model = import_model(model_uri)
    segmenter = import_segmenter()
    bentofile = PROJECT_ROOT / "bentofile.yaml"
    if not bentofile.is_file():
        raise InputError(f"no {bentofile}: build from a semqa checkout")
    cmd = [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "-o", "tag",
           "--arg", f"{BENTO_MODEL_ARG}={model.tag}", str(PROJECT_ROOT)]
    if segmenter is not None:
        cmd[-1:-1] = ["--arg", f"{BENTO_SEGMENTER_ARG}={segmenter.tag}"]
    if version:
        cmd[4:4] = ["--version", version]
    # The child must use this process's store, which BentoML fixed when it was first imported
    # (BENTOML_HOME may have changed since): <home>/models/<name>/<version>.
    env = {**os.environ, "BENTOML_HOME": str(Path(bentoml.models.get(model.tag).path).parents[2])}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise SemqaError(f"bentoml build failed: {last}")
    tag = proc.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return bentoml.bentos.get(tag)
