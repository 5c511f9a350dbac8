"""What the ``tfvtg`` and ``numpro`` commands share: logging to stderr and turning errors into one line.

Results go to stdout; progress bars, info and warnings to stderr. A `TfvtgError` becomes ``error: <message>``
and exit status 1, without a traceback unless ``--verbose`` was given.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from tfvtg.errors import TfvtgError

__all__ = ["option_group", "run_group", "setup_logging", "verbose_option"]

_LOG_FORMAT = "%(levelname)s: %(message)s"
F = TypeVar("F", bound=Callable[..., Any])


class _LowercaseLevel(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Format a copy: the record is shared with every other handler (e.g. pytest's log capture).
        copy = logging.makeLogRecord(record.__dict__)
        copy.levelname = record.levelname.lower()
        return super().format(copy)


def setup_logging(verbose: bool = False) -> None:
    """Send the toolkit's log records to stderr (info and up; debug with ``verbose``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowercaseLevel(_LOG_FORMAT))
    for name in ("tfvtg", "numpro"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["tfvtg.verbose"] = value
    setup_logging(value)
    return value


verbose_option = click.option(
    "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
    help="Show debug logs and full tracebacks.",
)


def option_group(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying several click options in the order listed, for options commands share."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def run_group(group: click.Group, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run a click group as a command; return the exit status instead of raising ``SystemExit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    setup_logging(verbose)
    try:
        result = group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except TfvtgError as exc:
        if verbose:
            logging.getLogger("tfvtg").exception("details")
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    return result if isinstance(result, int) else 0
