"""`sftune dashboard`: registered into the main CLI. Keep module import light (no streamlit)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `dashboard` subcommand to the main parser."""
