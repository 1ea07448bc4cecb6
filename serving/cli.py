"""`sftune serve`: registered into the main CLI. Keep module import light (no ray, no torch)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand to the main parser."""
