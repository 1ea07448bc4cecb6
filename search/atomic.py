"""Atomic file replacement: a reader (the dashboard, live; a concurrent trial) sees the old file or
the new one, never half of one, and a crash leaves no temp file behind. Standard library only."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["replace_atomically", "write_json_atomically"]


def replace_atomically(target: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``target``, then move it onto ``target``.

    The temp file is in the same directory, so the move is a rename on one filesystem.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomically(target: Path, payload: Any, **dump_options: Any) -> None:
    """``json.dump(payload)`` into ``target`` atomically (``dump_options`` go to json.dump)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(payload, handle, **dump_options)

    replace_atomically(target, write)
