"""Every data-validation error says which rows and why."""

import json

import pandas as pd
import pytest

from search.config import DataConfig
from search.sources import DataError, load_labeled_frame
from search.splits import split_frame


def _cfg(path, **kw):
    return DataConfig(source=str(path), **kw)


def test_zero_byte_and_header_only_files_are_empty(tmp_path):
    zero = tmp_path / "zero.csv"
    zero.write_text("")
    with pytest.raises(DataError, match="zero.csv is empty"):
        load_labeled_frame(_cfg(zero))
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(DataError, match="header.csv is empty: it has no data rows"):
        load_labeled_frame(_cfg(header))


def test_missing_column_names_it_and_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"review": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_labeled_frame(_cfg(path))
    assert "text column 'text' not found; columns are ['review', 'label']" in str(err.value)
    assert "data.text_column" in str(err.value)


def test_empty_texts_are_reported_by_row(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["fine", "", "ok", "   "], "label": [0, 1, 0, 1]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"rows 2, 4: text is empty"):
        load_labeled_frame(_cfg(path))


def test_non_string_texts_are_reported_by_row(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [
        {"text": "fine", "label": "a"}, {"text": 42, "label": "b"}, {"text": None, "label": "a"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"rows 2, 3: text is not a string"):
        load_labeled_frame(_cfg(path))


def test_missing_labels_are_reported_by_row(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "x", "label": "a"}, {"text": "y", "label": None}, {"text": "z", "label": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"row 2: label is missing"):
        load_labeled_frame(_cfg(path))


def test_single_class_is_rejected(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="every row has label 'x'; a classifier needs at least 2"):
        load_labeled_frame(_cfg(path))


def test_split_too_small_for_a_class_names_class_and_rows(tmp_path):
    path = tmp_path / "d.csv"
    texts = [f"t{i}" for i in range(12)]
    labels = ["big"] * 10 + ["tiny"] * 2
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    cfg = _cfg(path)
    frame, names = load_labeled_frame(cfg)
    with pytest.raises(DataError) as err:
        split_frame(frame, cfg, names)
    assert "class 'tiny' has only 2 row(s) (rows 11, 12)" in str(err.value)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_text("nope")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_labeled_frame(_cfg(path))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_labeled_frame(_cfg(tmp_path / "nope.csv"))
