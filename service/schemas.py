"""Response models of the service that are not semqa results (those live in :mod:`semqa`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from semqa.results import ModelRef


class ModelInfo(BaseModel):
    """The generator being served (``GET /v1/model_info``)."""

    model: ModelRef
    source: Literal["registry", "bento"] = Field(description="MLflow registry, or the model packaged in the Bento")
    bento_model: str | None = Field(None, description="BentoML model tag when served from a Bento")
    device: str
    batching: bool = Field(description="whether generator calls are batched adaptively")
    max_batch_size: int
