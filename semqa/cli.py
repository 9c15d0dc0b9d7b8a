"""The ``semqa`` command line.

Exit codes (DESIGN.md): 0 success, 1 a check failed (validation, promotion gate, lineage),
2 bad usage or bad input, with a one-line reason on stderr and no traceback.

Each command is one ``_add_<name>`` function that declares its arguments and a handler;
handlers import what they need lazily so ``semqa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from semqa.errors import CheckFailed, InputError, SemqaError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _fail(code: int, message: str) -> int:
    print(f"semqa: {message.splitlines()[0] if message else 'error'}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="semqa", description="Super-resolved SEM particle size analysis for QA.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except InputError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    except CheckFailed as exc:
        return _fail(EXIT_CHECK_FAILED, str(exc))
    except SemqaError as exc:
        return _fail(EXIT_CHECK_FAILED, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except Exception as exc:
        if os.environ.get("SEMQA_DEBUG"):
            raise
        return _fail(70, f"internal error: {type(exc).__name__}: {exc} (set SEMQA_DEBUG=1 for the traceback)")


# --- commands -------------------------------------------------------------------------
# One function per command; keep each thin: parse, call the core or an app, print.


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


if __name__ == "__main__":
    raise SystemExit(main())
