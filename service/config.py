"""Settings of the HTTP service: one pydantic settings model, read from the environment.

Service fields are ``SEMQA_SERVICE_<FIELD>`` (e.g. ``SEMQA_SERVICE_MAX_UPLOAD_BYTES``); the
model and the token keep the names the rest of semqa uses: ``SEMQA_MODEL_URI``,
``SEMQA_API_TOKEN`` and ``SEMQA_API_TOKEN_FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from semqa.errors import InputError
from semqa.io.images import DEFAULT_MAX_PIXELS


class ServiceSettings(BaseSettings):
    """Model, token and limits of the semqa service."""

    model_config = SettingsConfigDict(env_prefix="SEMQA_SERVICE_", frozen=True, protected_namespaces=())

    model_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("SEMQA_MODEL_URI"),
        description="generator to serve outside a Bento; default models:/semqa-generator@production",
    )
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SEMQA_API_TOKEN"))
    api_token_file: Path | None = Field(
        None, validation_alias=AliasChoices("SEMQA_API_TOKEN_FILE"), description="file holding the token (first line)"
    )
    max_upload_bytes: int = Field(256 * 2**20, ge=1, description="largest request body accepted (413 above)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest image accepted, in pixels (413 above)")
    max_files: int = Field(512, ge=1, description="most images in one request")
    batching: bool = Field(True, description="adaptive batching of generator calls (off: one image per forward call)")
    max_batch_size: int = Field(8, ge=2, description="most images the generator takes in one batch")
    max_latency_ms: int = Field(600_000, ge=1, description="longest a request may wait in the batching queue")
    tile_size: int = Field(256, ge=32, description="tile side of tiled inference, in input pixels (bounds memory)")
    tile_batch: int = Field(4, ge=1, description="tiles per forward pass")
    timeout_s: int = Field(3600, ge=1, description="longest one request may run (analyses of many images are slow on CPU)")
    # The budget is what a request gets to do its work; BentoML's own limit (timeout_s) must
    # not cut it off first, or the client gets BentoML's bare error instead of semqa's JSON.
    request_budget_s: float = Field(
        1800.0, gt=0, description="time one request may take, waiting for an analysis slot included: "
        "503 when it never got a slot, 504 when its work ran past it (the work stops at its next image); "
        "at most timeout_s",
    )
    max_concurrent_analyses: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1), ge=1,
        description="analyses run at once (CPU-bound: more than the cores only slows each); others wait within their budget",
    )

    @model_validator(mode="after")
    def _budget_within_timeout(self) -> ServiceSettings:
        if self.request_budget_s > self.timeout_s:
            raise ValueError(
                f"request_budget_s ({self.request_budget_s:g}) must not exceed timeout_s ({self.timeout_s}), "
                "BentoML's own limit on a request"
            )
        return self

    def token(self) -> str:
        """The API token, from ``SEMQA_API_TOKEN`` or ``SEMQA_API_TOKEN_FILE``.

        Raises
        ------
        InputError
            When neither is set, the file is unreadable, or the token is empty: the service
            never runs without authentication.
        """
        if self.api_token is not None:
            value = self.api_token.get_secret_value().strip()
        elif self.api_token_file is not None:
            try:
                lines = self.api_token_file.read_text().splitlines()
            except OSError as exc:
                raise InputError(f"cannot read SEMQA_API_TOKEN_FILE {self.api_token_file}: {exc.strerror}") from None
            value = lines[0].strip() if lines else ""
        else:
            raise InputError("no API token configured: set SEMQA_API_TOKEN or SEMQA_API_TOKEN_FILE")
        if not value:
            raise InputError("the configured API token is empty")
        return value


def load_settings() -> ServiceSettings:
    """Settings from the environment."""
    return ServiceSettings()
