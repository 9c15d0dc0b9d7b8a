"""Exceptions with a meaning for callers.

The CLI maps :class:`InputError` to exit code 2 and :class:`CheckFailed` to exit code 1;
the HTTP service maps :class:`InputError` to a 4xx JSON error. Messages are one line and
say what is wrong in the user's terms.
"""


class SemqaError(Exception):
    """Base class of every error semqa raises on purpose."""


class InputError(SemqaError):
    """Bad input or bad usage: a corrupt image, a missing pixel size, an unknown model."""

    #: HTTP status the service answers with.
    http_status: int = 400


class TooLargeError(InputError):
    """Input over a configured size limit (pixel count, upload bytes)."""

    http_status = 413


class UnsupportedMediaError(InputError):
    """A file that is not one of the accepted image types."""

    http_status = 415


class CheckFailed(SemqaError):
    """A check ran and failed: data validation, a promotion gate, a lineage digest."""
