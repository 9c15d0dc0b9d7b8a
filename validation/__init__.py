"""semqa validation app: Great Expectations suites for image pairs and lots.

``validate_pairs(dir)`` gates training data, ``validate_lots(dir)`` images to analyze;
``register_pair`` crops a misaligned pair to its aligned overlap.
"""

import os

# GX reads this when it starts: no usage analytics, no network.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from validation.config import ValidationConfig  # noqa: E402
from validation.register import register_pair  # noqa: E402
from validation.reports import LotValidationReport, PairValidationReport, log_report_to_mlflow  # noqa: E402
from validation.run import validate_lots, validate_pairs  # noqa: E402

__all__ = [
    "LotValidationReport",
    "PairValidationReport",
    "ValidationConfig",
    "log_report_to_mlflow",
    "register_pair",
    "validate_lots",
    "validate_pairs",
]
