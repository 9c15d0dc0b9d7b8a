"""Settings of the dashboard: one pydantic settings model, read from the environment.

Every field can be set as ``SEMQA_DASHBOARD_<FIELD>`` (e.g. ``SEMQA_DASHBOARD_LOTS_ROOT``),
so an installation is configured where it is deployed, not in the page.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

from semqa.registry.store import MODEL_NAME


class DashboardSettings(BaseSettings):
    """Where the dashboard finds lots, models and (optionally) the analysis service."""

    model_config = SettingsConfigDict(env_prefix="SEMQA_DASHBOARD_", frozen=True)

    lots_root: Path | None = Field(
        None,
        description="server-side folder of products laid out as <product>/<lot>/<images>; "
        "None offers uploads only",
    )
    service_url: HttpUrl | None = Field(
        None, description="analysis service base URL; None runs the analysis in the dashboard's process"
    )
    service_timeout_s: float = Field(600.0, gt=0, description="longest wait for one service call")
    model_name: str = Field(MODEL_NAME, description="registered model name of the SR generator")
    default_alias: str = Field("production", description="registry alias preselected as the model version")
    n_bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for the D-value confidence intervals")
    report_title: str = Field("Particle size distribution comparison", description="title of the exported report")


def load_settings() -> DashboardSettings:
    """Settings from the environment (``SEMQA_DASHBOARD_*``)."""
    return DashboardSettings()
