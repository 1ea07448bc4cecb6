"""The one checkpoint format, used by trials, `sftune best --export` and the server.

A checkpoint is a Hugging Face ``save_pretrained`` directory (safetensors weights, config with
label names, tokenizer) plus ``sftune.json``, which makes it describe itself: label names, trial
params, metrics, data fingerprint and package versions. Because it is a plain HF directory, the
export loads in ``transformers.pipeline("text-classification", model=DIR)`` unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from search.atomic import write_json_atomically

__all__ = [
    "META_FILE",
    "CheckpointError",
    "export_checkpoint",
    "package_versions",
    "read_meta",
    "save_checkpoint",
    "update_meta",
    "verify_safetensors_only",
]

META_FILE = "sftune.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class CheckpointError(ValueError):
    """A directory is not a usable sftune checkpoint."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("sftune", "torch", "transformers", "ray", "optuna"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_json_atomically(path, payload, indent=2, sort_keys=True, default=str)


def save_checkpoint(directory: Path, *, model, tokenizer, meta: dict[str, Any]) -> Path:
    """Write the classifier, tokenizer and ``sftune.json`` into ``directory`` atomically.

    The files go to a sibling temp dir that is renamed into place, so a reader (or a crash) never
    sees half a checkpoint.
    """
    full_meta = {"format_version": FORMAT_VERSION, "versions": package_versions(), **meta}

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        _write_json_atomic(staging / META_FILE, full_meta)

    return _replace_directory(Path(directory), write)


def _replace_directory(target: Path, write) -> Path:
    """Fill a sibling temp dir with ``write(staging)``, then rename it onto ``target``; on an
    error the temp dir is removed and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def verify_safetensors_only(directory: Path) -> None:
    """Refuse directories whose weights are pickles: loading one can run arbitrary code."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        pickles = [p.name for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES]
        hint = f" (found pickle weights {pickles}, which sftune never loads)" if pickles else ""
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}{hint}")


def read_meta(directory: Path) -> dict[str, Any]:
    """The ``sftune.json`` of a checkpoint ({} for a plain HF directory without one)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def update_meta(directory: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into a checkpoint's ``sftune.json`` (e.g. test metrics after evaluation)."""
    meta = {**read_meta(directory), **fields}
    _write_json_atomic(Path(directory) / META_FILE, meta)
    return meta


def export_checkpoint(source: Path, target: Path, **extra_meta: Any) -> Path:
    """Copy a checkpoint to ``target`` (replacing it), record ``extra_meta`` in it, and write
    its model card (``README.md``)."""
    from search.model_card import write_card

    source = Path(source)
    verify_safetensors_only(source)

    def write(staging: Path) -> None:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        meta = update_meta(staging, **extra_meta) if extra_meta else read_meta(staging)
        write_card(staging, meta)

    return _replace_directory(Path(target), write)
