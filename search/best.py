"""After a sweep: pick a trial, evaluate it once on the held-out test split, export it.

The test split is touched only here, never during selection. The result is recorded in the
sweep's ``sweep.json`` and in the exported checkpoint's ``sftune.json``, so a second call reuses
it instead of peeking at the test set again.
"""

from __future__ import annotations

import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pandas as pd

from search import artifacts, storage
from search.config import AppConfig, build_config
from search.lexical import (
    LEXICAL_FILE,
    LEXICAL_META,
    choose_weight,
    fit_layer,
    fuse,
    load_layer,
    log_softmax,
)
from search.results import (
    ResultsError,
    best_trial,
    chosen_trial,
    read_sweep_meta,
    read_trials,
    recorded_test_metrics,
    search_rows,
    summarize_trials,
    update_sweep_meta,
)

__all__ = ["attach_lexical", "choose_trial", "evaluate_checkpoint", "evaluate_export",
           "export_best", "sweep_config"]


def sweep_config(experiment_dir: str | Path) -> AppConfig:
    """The exact config the sweep ran with (stored in its sweep.json)."""
    return build_config(read_sweep_meta(experiment_dir)["config"], f"{experiment_dir} sweep.json")


def choose_trial(experiment_dir: str | Path, trial_id: str | None = None) -> pd.Series:
    """The sweep's model (:func:`~search.results.best_trial`), or the named trial; it must
    still have a checkpoint."""
    frame = read_trials(experiment_dir)
    chosen = chosen_trial(read_sweep_meta(experiment_dir))
    if trial_id is not None:
        frame = frame[frame["trial_id"] == trial_id]
        if frame.empty:
            raise ResultsError(f"no trial {trial_id!r} in {experiment_dir}")
    row = best_trial(frame, chosen)
    if row is None:
        raise ResultsError(f"no trial in {experiment_dir} finished an evaluation")
    if not _has_checkpoint(row):
        raise ResultsError(
            f"trial {row['trial_id']} has no checkpoint left (only the top "
            "tune.keep_checkpoints trials keep theirs)"
        )
    return row


def evaluate_checkpoint(checkpoint: Path, cfg: AppConfig) -> dict[str, float]:
    """Accuracy, macro-F1 and loss of a checkpoint (with its lexical layer, if it has one) on
    the config's test split."""
    data, frames = _model_data(cfg)
    expected = artifacts.read_meta(checkpoint).get("data_fingerprint")
    # A search trial trained on a subset of the training split: its test split is the same.
    if expected and expected.split("-sub")[0] != data.fingerprint:
        raise ResultsError(
            f"the data changed since this checkpoint was trained (fingerprint {data.fingerprint} "
            f"!= {expected}); the test split would not be held out"
        )
    record = _evaluate(checkpoint, data.test, data.label_names, cfg, pad_id=data.pad_id,
                       texts=_single_texts(frames.test))
    return record | {"test_examples": len(data.test)}


#: While an export runs: the data it prepared, by config. One export evaluates several
#: checkpoints of one sweep on the same data (what tuning bought, the lexical layer's validation
#: pass, the test), each tokenized once; nothing outlives the export (a file changed later is
#: read afresh).
_EXPORT_DATA: ContextVar[dict | None] = ContextVar("export_data", default=None)


def _model_data(cfg: AppConfig):
    """The sweep's data, tokenized as its trials saw it, and its split frames (the raw texts,
    in the same row order, for the lexical layer)."""
    from search.data import load_splits, prepare_data
    from search.model import load_tokenizer, resolve_model_dir

    cache, key = _EXPORT_DATA.get(), (cfg.data.model_dump_json(), cfg.model.name)
    if cache is not None and key in cache:
        return cache[key]
    data = prepare_data(cfg.data, load_tokenizer(resolve_model_dir(cfg.model.name)))
    prepared = (data, load_splits(cfg.data)[0])
    if cache is not None:
        cache[key] = prepared
    return prepared


def _single_texts(frame: pd.DataFrame) -> list[str] | None:
    """A split's texts for the lexical layer; None for text pairs (it reads single texts)."""
    return None if "text_pair" in frame.columns else frame["text"].tolist()


def evaluate_export(model_dir: Path, rows: pd.DataFrame, label_names: list[str],
                    cfg: AppConfig) -> dict[str, Any]:
    """Test metrics of an exported model on labelled ``rows`` (text, [text_pair,] label id
    into ``label_names``), encoded as the model was trained: its own tokenizer, length and
    truncation, and its lexical layer. Any sftune export can be scored on any data with the same
    labels."""
    from search.encoding import encode_pairs, encode_texts, model_max_length
    from search.model import load_tokenizer

    meta = artifacts.read_meta(model_dir)
    own = [str(n) for n in meta.get("label_names") or []]
    if sorted(own) != sorted(label_names):
        raise ResultsError(f"{model_dir} predicts labels {own}, the data has {label_names}; "
                           "a model is only compared on the labels it knows")
    # The data's label ids, as the model numbers its labels.
    labels = [own.index(label_names[i]) for i in rows["label"]]
    tokenizer = load_tokenizer(Path(model_dir))
    max_length = int(meta.get("max_length") or model_max_length(tokenizer))
    if "text_pair" in rows.columns:
        split = encode_pairs(tokenizer, rows["text"], rows["text_pair"], max_length, labels)
    else:
        split = encode_texts(tokenizer, rows["text"], max_length, labels,
                             meta.get("truncation") or "head")
    pad_id = tokenizer.pad_token_id or 0
    return _evaluate(Path(model_dir), split, own, cfg, pad_id, texts=_single_texts(rows)) \
        | {"test_examples": len(split)}


def _evaluate(checkpoint: Path, split, label_names: list[str], cfg: AppConfig,
              pad_id: int, texts: list[str] | None = None) -> dict[str, Any]:
    """The test metrics of one checkpoint on an encoded split (its labels in the model's ids),
    through its lexical layer when it has one and ``texts`` (the split's, in row order) are
    given; then the transformer's own figures are recorded beside them."""
    from search.metrics import per_class_record
    from search.train import log_prob_metrics

    own = log_softmax(_checkpoint_logits(checkpoint, split, cfg, pad_id))
    layer = load_layer(checkpoint) if texts is not None else None
    fused = fuse(own, layer.log_probs(texts), layer.weight) if layer else own
    metrics = log_prob_metrics(fused, split.labels, len(label_names))
    record = {f"test_{k}": v for k, v in metrics.items() if not isinstance(v, dict | list)}
    # Per class and the confusion matrix, under the labels they are for.
    record["test_per_class"] = per_class_record(metrics, label_names)
    if layer:
        alone = log_prob_metrics(own, split.labels, len(label_names))
        record.update(lexical_weight=layer.weight, test_accuracy_model_only=alone["accuracy"],
                      test_f1_macro_model_only=alone["f1_macro"])
    return record


def _checkpoint_logits(checkpoint: Path, split, cfg: AppConfig, pad_id: int):
    """The checkpoint's transformer logits on an encoded split, in its row order."""
    from transformers import AutoModelForSequenceClassification

    from search.batching import encoder_inputs
    from search.device import resolve_device
    from search.model import quiet_transformers
    from search.train import split_logits

    quiet_transformers()
    artifacts.verify_safetensors_only(checkpoint)
    device = resolve_device(cfg.train.device)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint), use_safetensors=True, local_files_only=True
    ).to(device).eval()
    return split_logits(lambda batch: model(**encoder_inputs(batch)).logits, split,
                        batch_size=cfg.train.eval_batch_size, pad_id=pad_id, device=device,
                        max_tokens=cfg.train.max_batch_tokens)


def attach_lexical(checkpoint: Path, cfg: AppConfig) -> dict[str, Any]:
    """Fit the lexical layer (:mod:`search.lexical`) on the training texts, choose its weight on
    the validation split against the checkpoint's own predictions, and save it beside the
    weights (weight 0: the transformer alone scored best). Returns what was chosen."""
    data, frames = _model_data(cfg)
    if _single_texts(frames.train) is None:
        return {"weight": 0.0, "reason": "text pairs: the layer reads single texts"}
    layer = fit_layer(frames.train["text"].tolist(), frames.train["label"].to_numpy(),
                      len(data.label_names))
    own = log_softmax(_checkpoint_logits(checkpoint, data.validation, cfg, data.pad_id))
    layer.weight, table = choose_weight(own, layer.log_probs(frames.validation["text"].tolist()),
                                        data.validation.labels)
    if layer.weight:  # weight 0: nothing to apply, nothing saved
        layer.save(checkpoint)
    return {"weight": layer.weight, "terms": len(layer.terms),
            "validation": table, "validation_examples": len(data.validation)}


def export_best(experiment_dir: str | Path, target: str | Path | None = None,
                trial_id: str | None = None) -> dict[str, Any]:
    """Evaluate the chosen trial on test (once) and export it; returns what was recorded.

    ``experiment_dir`` and ``target`` may each be a local directory or a bucket URI (default
    target: ``<experiment>/export``); a checkpoint in a bucket is downloaded once. For the
    sweep's own model it also records what the tuning bought (:func:`tuning_gain`).
    """
    token = _EXPORT_DATA.set({})
    try:
        return _export_best(str(experiment_dir), target, trial_id)
    finally:
        _EXPORT_DATA.reset(token)


def _export_best(experiment_dir: str, target: str | Path | None,
                 trial_id: str | None) -> dict[str, Any]:
    cfg = sweep_config(experiment_dir)
    row = choose_trial(experiment_dir, trial_id)
    # What the tuning bought compares the two transformers alone, before any lexical layer.
    gain = tuning_gain(experiment_dir, cfg) if trial_id is None else None
    _ensure_lexical(experiment_dir, row, cfg)
    test = _test_metrics(experiment_dir, row, cfg)
    target = storage.root(str(target) if target else storage.join(experiment_dir, "export"))
    meta = read_sweep_meta(experiment_dir)
    # How the model's configuration was chosen: the finalists' seeds and spread (the final
    # trial's, or, in a full-fidelity sweep, the chosen search run's own).
    selection = meta.get("final_source") if row["phase"] == "final" or \
        row["trial_id"] == chosen_trial(meta) else None
    _export(storage.local_copy(row["checkpoint"]), target, test=test, sweep=meta.get("name"),
            trial_id=row["trial_id"], tuning_gain=gain, selection=selection)
    if trial_id is None:
        update_sweep_meta(experiment_dir, export_dir=target, tuning_gain=gain)
    return {"trial_id": row["trial_id"], "phase": row["phase"], "score": float(row["score"]),
            "best_epoch": float(row["best_epoch"]), "export_dir": target,
            "tuning_gain": gain, **test}


def _export(checkpoint: Path, target: str, **meta: Any) -> None:
    """The one checkpoint format at ``target``: staged and swapped in whole locally; in a
    bucket, staged in a temp dir, then the old export is deleted and the new one uploaded file
    by file (a replica starting in that window fails to load and says so; not atomic)."""
    if not storage.is_remote(target):
        artifacts.export_checkpoint(checkpoint, Path(target), **meta)
        return
    with tempfile.TemporaryDirectory() as tmp:
        staged = artifacts.export_checkpoint(checkpoint, Path(tmp) / "export", **meta)
        storage.remove(target)
        storage.upload_dir(staged, target)


def _ensure_lexical(experiment_dir: str, row: pd.Series, cfg: AppConfig) -> None:
    """Give the trial's checkpoint its lexical layer (once: its ``sftune.json`` then records
    the choice, and later exports reuse it), and forget test metrics measured without it."""
    location = row["checkpoint"]
    checkpoint = storage.local_copy(location)
    if cfg.train.lexical == "off" or "lexical" in artifacts.read_meta(checkpoint):
        return
    record = attach_lexical(checkpoint, cfg)
    artifacts.update_meta(checkpoint, lexical=record)
    if storage.is_remote(location):  # the bucket's copy is the checkpoint: it gets the layer
        for name in (artifacts.META_FILE, LEXICAL_FILE, LEXICAL_META):
            if (checkpoint / name).is_file():
                storage.write_bytes(storage.join(location, name), (checkpoint / name).read_bytes())
    tests = read_sweep_meta(experiment_dir).get("test") or {}
    if row["trial_id"] in tests:
        update_sweep_meta(experiment_dir, test={k: v for k, v in tests.items()
                                                if k != row["trial_id"]})


def _test_metrics(experiment_dir: str, row: pd.Series, cfg: AppConfig) -> dict[str, float]:
    """The trial's test metrics: recorded ones if any, else measured once and recorded."""
    meta = read_sweep_meta(experiment_dir)
    test = recorded_test_metrics(meta, row["trial_id"])
    if test is None:
        test = evaluate_checkpoint(storage.local_copy(row["checkpoint"]), cfg)
        update_sweep_meta(experiment_dir, test={**(meta.get("test") or {}), row["trial_id"]: test})
    return test


def tuning_gain(experiment_dir: str, cfg: AppConfig) -> dict[str, Any] | None:
    """What the tuning bought: the search trial the sweep chose against the untuned default
    trial (the search's first), both on the test split and at the same fidelity, the search's.

    None when either trial is missing or has no checkpoint: a resumed old sweep, or a trial
    cut by Tune's backstop between its report and its checkpoint (search trials normally end
    themselves in time: see search.sweep.STRAGGLER_FACTOR; its score still counts, and the final
    trial trains it).
    """
    summary = summarize_trials(read_trials(experiment_dir))
    search = search_rows(summary)
    search = search[search["score"].notna()]
    default = search[search["default_point"]]
    if search.empty or default.empty:
        return None
    # The search trial whose configuration the final trial trained, else the best one.
    chosen = search[search["trial_id"] == chosen_trial(read_sweep_meta(experiment_dir))]
    tuned, untuned = (chosen if len(chosen) else search).iloc[0], default.iloc[0]
    if not (_has_checkpoint(tuned) and _has_checkpoint(untuned)):
        return None
    # The transformers alone: the exported trial's record may hold its lexical layer's figures.
    tuned_test = _transformer_alone(_test_metrics(experiment_dir, tuned, cfg))
    untuned_test = _transformer_alone(_test_metrics(experiment_dir, untuned, cfg))
    return {
        "tuned_trial": tuned["trial_id"], "default_trial": untuned["trial_id"],
        "fidelity": "subset" if cfg.tune.search_examples else "full",
        "search_examples": cfg.tune.search_examples,
        **{f"{side}_{m}": float(t[f"test_{m}"]) for side, t in
           (("tuned", tuned_test), ("default", untuned_test)) for m in ("accuracy", "f1_macro")},
        **{f"gain_{m}": float(tuned_test[f"test_{m}"] - untuned_test[f"test_{m}"])
           for m in ("accuracy", "f1_macro")},
    }


def _transformer_alone(test: dict[str, Any]) -> dict[str, Any]:
    """A test record's figures without the lexical layer (a record without one: as it is)."""
    return {**test, **{f"test_{m}": test[f"test_{m}_model_only"] for m in ("accuracy", "f1_macro")
                       if f"test_{m}_model_only" in test}}


def _has_checkpoint(row: pd.Series) -> bool:
    return isinstance(row["checkpoint"], str) and storage.is_dir(row["checkpoint"])
