"""What every training's typed options share: YAML loading, MLflow params, the checkpoint key.

:class:`training.config.TrainConfig` (the generator) and
:class:`training.segmenter.config.SegmenterTrainConfig` both derive from :class:`Options`, so a
bad file gets the same one-line error and every field is logged the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from semqa.errors import InputError

O = TypeVar("O", bound="Options")


class Options(BaseModel):
    """Base of a training's options model."""

    #: Fields left out of :meth:`key`: they do not shape the trained weights.
    key_exclude: ClassVar[set[str]] = set()

    def key(self, *extra: str) -> str:
        """A short digest of the fields that shape the trained weights (and ``extra``)."""
        fields = self.model_dump(mode="json", exclude=self.key_exclude)
        blob = json.dumps([fields, *extra], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, str]:
        """Every field as ``a.b = value`` strings, for ``mlflow.log_params``."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

        walk("", self.model_dump(mode="json"))
        return out

    @classmethod
    def validated(cls: type[O], data: dict, where: str) -> O:
        """``data`` validated; the first error as a one-line :class:`InputError` naming ``where``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "config"
            raise InputError(f"{where}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None

    @classmethod
    def from_yaml(cls: type[O], path: str | Path, **overrides: Any) -> O:
        """Load and validate a YAML mapping (then ``overrides``); errors become one-line :class:`InputError`."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"no such config file: {path}") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of {cls.__name__} settings")
        return cls.validated({**data, **overrides}, str(path))
