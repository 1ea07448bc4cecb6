"""The model card (``README.md``) of every export: what the model is, how it was chosen and
measured, and how to load it, from the checkpoint's own ``sftune.json``. Written with
``huggingface_hub``'s :class:`~huggingface_hub.ModelCard`, so the Hub reads its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "render_card", "write_card"]

CARD_FILE = "README.md"


def _base_model(meta: dict[str, Any]) -> str | None:
    """The base model as the Hub names it (``org/name``), or None for a local or built-in one."""
    name = str(meta.get("base_model") or "")
    return name if name.count("/") == 1 and not name.startswith((".", "/", "~")) else None


def _table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in rows.items() if value is not None]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else f"`{value}`"


def _evaluation(meta: dict[str, Any]) -> str:
    metrics = meta.get("metrics") or {}
    test = meta.get("test") or {}
    rows = {"validation accuracy (best evaluation)": metrics.get("val_accuracy"),
            "validation macro-F1": metrics.get("val_f1_macro"),
            "test accuracy (measured once)": test.get("test_accuracy"),
            "test macro-F1": test.get("test_f1_macro"),
            "test examples": test.get("test_examples")}
    text = _table(rows)
    gain = meta.get("tuning_gain") or {}
    if "gain_accuracy" in gain:
        text += (f"\n\nWhat the search bought over the untuned default point, both at search "
                 f"fidelity on the test split: {100 * gain['gain_accuracy']:+.1f} accuracy "
                 f"points ({gain['tuned_accuracy']:.3f} against {gain['default_accuracy']:.3f}).")
    return text + _lexical(meta.get("lexical") or {}, test) + _selection(meta.get("selection")
                                                                        or {})


def _lexical(lexical: dict[str, Any], test: dict[str, Any]) -> str:
    """What the lexical layer (TF-IDF + linear SVM) adds, when validation chose it."""
    if not lexical.get("weight"):
        return ""
    alone = test.get("test_accuracy_model_only")
    measured = f" (the transformer alone: {alone:.4g} test accuracy)" if alone is not None else ""
    share = lexical["weight"]
    how = ("its predictions alone are the model's: on validation they beat the transformer's "
           "and every mix of the two" if share >= 1 else
           f"its log-probabilities are added to the transformer's at {share / (1 - share):.3g} "
           f"times (the words' share {share:g}), the mix that scored best on validation")
    return (f"\n\nThe test figures include the **lexical layer** (`lexical.safetensors`): a "
            "TF-IDF + linear SVM over word uni- and bigrams, its scores calibrated into "
            f"probabilities; {how}{measured}. "
            "`sftune serve` and the dashboard apply it; a plain `transformers.pipeline` reads "
            "the transformer alone.")


def _selection(selection: dict[str, Any]) -> str:
    """How the configuration was chosen, when finalists were re-run with more seeds."""
    chosen = [f for f in selection.get("finalists") or []
              if f.get("trial_id") == selection.get("trial_id")]
    if not chosen:
        return ""
    f = chosen[0]
    seeds = ", ".join(str(s) for s in f["seeds"])
    flag = "" if f["reproducible"] else " It did **not** reproduce its search score."
    return (f"\n\nChosen among {len(selection['finalists'])} finalists re-run with more seeds "
            f"({selection['reason']}): validation {f['mean']:.3f} ± {f['sd']:.3f} over its "
            f"search run and seeds {seeds}, at the search's fidelity.{flag}")


def render_card(meta: dict[str, Any], name: str) -> str:
    """The card's markdown, with YAML metadata the Hub reads (pipeline tag, library, base)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", pipeline_tag="text-classification",
                         tags=["sftune", "text-classification"], base_model=_base_model(meta))
    labels = ", ".join(f"`{label}`" for label in meta.get("label_names", []))
    training = {"base model": meta.get("base_model"), "sweep": meta.get("sweep"),
                "trial": meta.get("trial_id"), "phase": meta.get("phase"),
                "data fingerprint": meta.get("data_fingerprint"),
                "data sizes (train / validation / test)": " / ".join(
                    str(n) for n in (meta.get("data_sizes") or {}).values()) or None,
                "max_length": meta.get("max_length"), "truncation": meta.get("truncation")}
    params = meta.get("params") or {}
    body = f"""# {name}

A text classifier fine-tuned with sftune (a hyperparameter search for supervised
fine-tuning) from `{meta.get("base_model")}`.

**Labels:** {labels}.

## Intended use

Classifying texts like those it was trained on into the labels above. It was validated and
tested only on held-out parts of that data (fingerprint below); measure it on your own data
before you rely on it elsewhere.

## Training

{_table(training)}

Hyperparameters (the search's choice; the LM term's weight is alpha in L = L_lm + alpha L_task):

{_table(params)}

## Evaluation

{_evaluation(meta)}

## How to load

```python
from transformers import pipeline

classifier = pipeline("text-classification", model="PATH_OR_HUB_ID")
classifier("A gem of a film.")
# a model trained on text pairs: classifier({{"text": "...", "text_pair": "..."}})
```

or serve it over HTTP: `sftune serve --model PATH`. The weights are safetensors only.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def write_card(directory: Path, meta: dict[str, Any]) -> Path:
    """Write ``README.md`` into the export ``directory``."""
    name = meta.get("sweep") or Path(directory).name
    path = Path(directory) / CARD_FILE
    path.write_text(render_card(meta, f"{name}: text classifier"))
    return path
