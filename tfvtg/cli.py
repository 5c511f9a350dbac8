"""The ``tfvtg`` command: ground, extract, decompose, evaluate, plot."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tfvtg import __version__
from tfvtg.console import run_group, verbose_option


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tfvtg")
@verbose_option
def cli() -> None:
    """Training-free video temporal grounding (TFVTG: BLIP-2 + an LLM's query decomposition)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tfvtg`` console script; returns the exit status."""
    return run_group(cli, argv, "tfvtg")


if __name__ == "__main__":
    raise SystemExit(main())
