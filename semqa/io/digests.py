"""Content digests, the identities lineage follows: one ``sha256:<hex>`` scheme for everything.

* :func:`bytes_digest` / :func:`file_digest`: one file's bytes (input images, weights);
* :func:`dataset_digest`: a data set as ``{relative path: file digest}``, independent of the
  order files are listed in; training, validation and the promotion gates' evaluation set all
  use it, so the digest a training run records is the one its validation report carries;
* :func:`folder_digest`: :func:`dataset_digest` of every file under a folder.

Examples
--------
>>> bytes_digest(b"")
'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
>>> dataset_digest({"b": "sha256:2", "a": "sha256:1"}) == dataset_digest({"a": "sha256:1", "b": "sha256:2"})
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from semqa.errors import InputError

PREFIX = "sha256:"


def bytes_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return PREFIX + hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return PREFIX + h.hexdigest()


def dataset_digest(file_digests: Mapping[str, str]) -> str:
    """``sha256:<hex>`` over ``"<relative path> <file digest>"`` lines sorted by path.

    Renaming, adding, removing or changing any file changes it; the order files are listed
    in does not.
    """
    lines = "".join(f"{rel} {digest}\n" for rel, digest in sorted(file_digests.items()))
    return bytes_digest(lines.encode())


def folder_digest(folder: str | Path) -> str:
    """:func:`dataset_digest` of every file under ``folder`` (paths relative to it, POSIX style)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise InputError(f"data folder is empty: {folder}")
    return dataset_digest({p.relative_to(folder).as_posix(): file_digest(p) for p in files})
