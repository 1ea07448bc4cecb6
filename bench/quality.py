r"""Quality: the test accuracy a user gets from sftune, against simple baselines, over split seeds.

For each dataset and split seed, on the same splits and the same cores, with the same wall budget:

- ``tfidf``: TF-IDF (word uni- and bigrams) + a linear SVM (scikit-learn), on the training split;
- ``untuned``: one plain fine-tune of the same model at the usual defaults (task loss only, no
  frozen layers, ``--untuned-lr``, the stock fresh head: ``train.head_init=random``), on all the
  training data for up to 3 epochs, its lr schedule fitted to the budget
  (``train.time_limit_s``), best evaluation kept;
- ``untuned-probe``: the same fine-tune with sftune's head warm start (``train.head_init=probe``):
  what the probe alone is worth;
- ``hf``: HF ``Trainer.hyperparameter_search`` (optuna backend: the same TPE sampler and seed,
  successive halving at the same rungs as sftune's ASHA) over what HF can search (lr, weight
  decay, dropout), at sftune's search fidelity (one pass over the same stratified subset, scored
  on the same validation sample, the stock fresh head) for the same share of the budget
  (``tune.search_fraction``); then one model trained with HF's best hyperparameters on all the
  training data in the time left (by sftune's trainer, as the untuned run is: HF returns
  hyperparameters, not a model, and sftune's trainer is the faster of the two, so this favours
  HF), best evaluation kept, tested once;
- ``sftune``: ``sftune sweep --config configs/default.yaml`` (or ``--config``) given the budget
  (``tune.time_budget_s``), then its exported model tested once.

Each system runs in its own process, one after the other, so none shares the cores with another.

    .venv/bin/python bench/quality.py                          # reviews, 3 seeds, make run's budget
    .venv/bin/python bench/quality.py --datasets debates speeches --seeds 0 --budget 240
    .venv/bin/python bench/quality.py --quick                  # minutes: checks the harness
    .venv/bin/python bench/quality.py --config configs/full.yaml --systems sftune --seeds 0 \
        --budget 2400 --set tune.gpus_per_trial=0 --tag full-cpu   # another config, on CPUs

Writes bench/results/quality[-TAG].json and prints the table (means +- sd over the seeds).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, write_json  # noqa: E402
from bench.datasets import load  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"
#: Seconds of the budget the untuned run keeps for its test evaluation, as the sweep does.
RESERVE_S = 30.0
SYSTEMS = ("tfidf", "untuned", "untuned-probe", "hf", "sftune")
DEFAULT_SYSTEMS = ("tfidf", "untuned", "sftune")  # untuned-probe is an ablation, on request


def _config(source: str, seed: int, extra: list[str]):
    from search.config import load_config

    return load_config(CONFIG, [f"data.source={source}", f"data.split_seed={seed}", *extra])


def _majority(labels) -> float:
    return float(labels.value_counts(normalize=True).max())


def run_tfidf(source: str, seed: int, budget: float, args) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    from search.sources import load_labeled_frame
    from search.splits import split_frame

    cfg = _config(source, seed, [])
    frame, names = load_labeled_frame(cfg.data)
    splits = split_frame(frame, cfg.data, names)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    model = LinearSVC().fit(vectorizer.fit_transform(splits.train["text"]),
                            splits.train["label"])
    predicted = model.predict(vectorizer.transform(splits.test["text"]))
    return {"test_accuracy": accuracy_score(splits.test["label"], predicted),
            "test_f1_macro": f1_score(splits.test["label"], predicted, average="macro"),
            "majority_test_accuracy": _majority(splits.test["label"]),
            "train_examples": len(splits.train), "test_examples": len(splits.test)}


def run_untuned(source: str, seed: int, budget: float, args, head: str = "random"
                ) -> dict[str, Any]:
    point = {"lr": args.untuned_lr, "dropout": 0.1, "weight_decay": 0.01}
    # random: the stock fresh head of a fine-tune by hand
    return _fine_tune(source, seed, budget, time.perf_counter(), point, head,
                      args.untuned_epochs)


def _fine_tune(source: str, seed: int, budget: float, start: float, point: dict[str, float],
               head: str, epochs: int) -> dict[str, Any]:
    """One fine-tune at ``point`` (task loss only, no frozen layers) on all the training data for
    up to ``epochs``, its lr schedule fitted to what is left of the budget since ``start``,
    best evaluation kept, tested once."""
    from search.best import evaluate_checkpoint
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir
    from search.train import Trainer

    cfg = _config(source, seed, [
        *(f"space.{name}={value}" for name, value in point.items()),
        "space.frozen_depth=0", "space.joint_epochs=0", f"train.epochs={epochs}",
        f"train.head_init={head}", "train.eval_every=null", "train.patience=10"])
    model_dir = resolve_model_dir(cfg.model.name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))
    limit = budget - RESERVE_S - (time.perf_counter() - start)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"time_limit_s": limit})})
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(cfg=cfg, params=cfg.default_params(), data=data, model_dir=model_dir,
                         workdir=Path(tmp)).fit()
        test = evaluate_checkpoint(result.checkpoint_dir, cfg)
    return {**test, "best_val_accuracy": result.best["val_accuracy"],
            "epochs_run": result.history[-1]["epoch"], **point, "head_init": head,
            "train_examples": len(data.train), "max_length": data.max_length,
            "train_s": limit}


def run_untuned_probe(source: str, seed: int, budget: float, args) -> dict[str, Any]:
    """The untuned fine-tune with sftune's head warm start: the ablation of the probe alone."""
    return run_untuned(source, seed, budget, args, head="probe")


def run_hf(source: str, seed: int, budget: float, args) -> dict[str, Any]:
    """HF's search at sftune's search fidelity and share of the budget, then one final model."""
    start = time.perf_counter()
    cfg = _config(source, seed, [*args.set])
    search = _hf_search(cfg, timeout=budget * cfg.tune.search_fraction)
    found, default = search.pop("hyperparameters"), cfg.default_params()
    point = {"lr": found.get("learning_rate", default.lr),
             "weight_decay": found.get("weight_decay", default.weight_decay),
             "dropout": found.get("dropout", default.dropout)}
    final = _fine_tune(source, seed, budget, start, point, "random", cfg.train.epochs)
    return {**final, **search}


def _hf_search(cfg, timeout: float) -> dict[str, Any]:
    """``Trainer.hyperparameter_search(backend="optuna")`` on the sweep's search subset."""
    import optuna
    import torch
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.utils import logging as hf_logging

    from bench import sweep_vs_hf as hf
    from search.data import prepare_data, subset
    from search.model import load_tokenizer, resolve_model_dir

    start = time.perf_counter()
    hf_logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One trial at a time, so each gets all the cores.
    torch.set_num_threads(cfg.tune.num_cpus or os.cpu_count() or 1)
    model_dir = resolve_model_dir(cfg.model.name)
    tokenizer = load_tokenizer(model_dir)
    data = subset(prepare_data(cfg.data, tokenizer), train=cfg.tune.search_examples,
                  validation=cfg.tune.search_eval_examples, seed=cfg.data.split_seed)
    dims = hf._dims(cfg)
    storage = optuna.storages.InMemoryStorage()  # kept so the trials can be read back
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model_init=hf.ModelInit(str(model_dir), data.label_names, dims["dropout"]),
            args=_hf_search_args(cfg, out), train_dataset=hf._rows(data.train),
            eval_dataset=hf._rows(data.validation), compute_metrics=hf.accuracy_metrics,
            data_collator=DataCollatorWithPadding(tokenizer))
        best = trainer.hyperparameter_search(
            hp_space=hf.OptunaSpace(dims), compute_objective=hf.accuracy_objective,
            n_trials=cfg.tune.num_samples, direction="maximize", backend="optuna",
            sampler=hf._tpe(cfg), pruner=_hf_pruner(cfg, len(data.train)), study_name="hf",
            storage=storage, timeout=max(1.0, timeout - (time.perf_counter() - start)))
    trials = optuna.load_study(study_name="hf", storage=storage).trials
    # A trial's score is its best evaluation, as for sftune's trials.
    scores = [max(t.intermediate_values.values(), default=math.nan) for t in trials]
    majority = _val_majority(cfg)
    return {"hyperparameters": best.hyperparameters, "search_best_val": best.objective,
            "search_s": time.perf_counter() - start, "search_trials": len(trials),
            "trials_at_majority": sum(score <= majority + 1e-9 for score in scores),
            "val_majority": majority, "search_states": [t.state.name for t in trials]}


def _hf_search_args(cfg, out: str):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out, per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size, num_train_epochs=1,
        learning_rate=cfg.default_params().lr, weight_decay=cfg.default_params().weight_decay,
        warmup_steps=cfg.train.warmup_ratio, max_grad_norm=cfg.train.max_grad_norm,
        seed=cfg.train.seed, eval_strategy="steps", eval_steps=_eval_steps(cfg),
        save_strategy="no", logging_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0)


def _eval_steps(cfg) -> int:
    # sftune's search trials are scored every train.eval_every examples: the same rungs here.
    return max(1, cfg.train.eval_every // cfg.train.batch_size)


def _hf_pruner(cfg, train_examples: int):
    """Successive halving at sftune's ASHA rungs (grace, reduction factor); never at the end."""
    import optuna

    from bench.sweep_vs_hf import LastEpochSafe

    steps = -(-train_examples // cfg.train.batch_size)
    every = _eval_steps(cfg)
    return LastEpochSafe(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(1, cfg.tune.grace_period // cfg.train.batch_size),
        reduction_factor=int(cfg.tune.reduction_factor)), last_step=steps // every * every)


def run_sftune(source: str, seed: int, budget: float, args) -> dict[str, Any]:
    from search.best import export_best
    from search.results import read_trials, summarize_trials
    from search.sweep import run_sweep

    with tempfile.TemporaryDirectory() as storage:
        cfg = _config(source, seed, [f"tune.time_budget_s={budget}",
                                     f"tune.storage_path={storage}", "tune.optuna_db=false",
                                     *args.set])
        path = run_sweep(cfg, name="quality")
        best = export_best(path)
        paired = _paired_layers(path, best["export_dir"])  # while the sweep's files exist
        summary = summarize_trials(read_trials(path))
        selection = _selection(path, cfg.tune.min_improvement)
    search = summary[summary["phase"] == "search"]
    majority = _val_majority(cfg)
    at_majority = search["val_accuracy"] <= majority + 1e-9
    gain = best.get("tuning_gain") or {}
    return {"test_accuracy": best["test_accuracy"], "test_f1_macro": best["test_f1_macro"],
            # The transformer alone, when the export's lexical layer has a weight (else equal).
            "lexical_weight": best.get("lexical_weight", 0.0),
            "test_accuracy_model_only": best.get("test_accuracy_model_only",
                                                 best["test_accuracy"]),
            "test_f1_macro_model_only": best.get("test_f1_macro_model_only",
                                                 best["test_f1_macro"]),
            "best_val_accuracy": best["score"], "search_trials": len(search),
            "trials_at_majority": int(at_majority.sum()), "val_majority": majority,
            "tuning_gain_accuracy": gain.get("gain_accuracy"),
            "default_trial_test_accuracy": gain.get("default_accuracy"),
            "chosen": {k: summary[summary["trial_id"] == best["trial_id"]].iloc[0][k]
                       for k in ("lr", "frozen_depth", "joint_epochs", "alpha", "weight_decay",
                                 "dropout", "epochs")},
            "stop_reasons": search["stop_reason"].value_counts().to_dict(),
            "paired_layers": paired, **selection}


def _paired_layers(path: str, export_dir: str, cfg=None) -> dict[str, Any]:
    """The exported transformer pooled with each words' model, each at the share validation
    picks: the layer now (a calibrated linear SVM) and before 70f3330 (a logistic regression,
    C = 10). Both on the same transformer, so the comparison is free of the run-to-run spread
    of a time-budgeted sweep. An error is recorded, never raised: the run's figures stand."""
    try:
        import numpy as np

        from search.best import _checkpoint_logits, _model_data, sweep_config
        from search.lexical import choose_weight, fit_layer, fuse, log_softmax

        cfg = cfg or sweep_config(path)
        data, frames = _model_data(cfg)
        splits = ("validation", "test")
        own = {name: log_softmax(_checkpoint_logits(Path(export_dir), getattr(data, name), cfg,
                                                    data.pad_id)) for name in splits}
        texts = {name: getattr(frames, name)["text"].tolist() for name in splits}
        train, labels = frames.train["text"].tolist(), frames.train["label"].to_numpy()
        layer = fit_layer(train, labels, len(data.label_names))
        words = {"svm": layer.log_probs, "logreg": _logreg(train, labels, len(data.label_names))}
        record = {}
        for name, log_probs in words.items():
            share, _ = choose_weight(own["validation"], log_probs(texts["validation"]),
                                     data.validation.labels)
            fused = fuse(own["test"], log_probs(texts["test"]), share)
            alone = log_probs(texts["test"]).argmax(-1) == np.asarray(data.test.labels)
            record[name] = {"share": share, "words_alone_test_accuracy": float(alone.mean()),
                            "test_accuracy": float(np.mean(fused.argmax(-1)
                                                           == np.asarray(data.test.labels)))}
        return record
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}


def _logreg(texts: list[str], labels, num_labels: int):
    """The layer's words' model before 70f3330: TF-IDF + logistic regression at C = 10."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from search.lexical import VECTORIZER

    vectorizer = TfidfVectorizer(**VECTORIZER, dtype=np.float32)
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectorizer.fit_transform(texts), labels)

    def log_probs(batch: list[str]) -> np.ndarray:
        probs = np.full((len(batch), num_labels), 1e-12)
        probs[:, model.classes_] = model.predict_proba(vectorizer.transform(batch))
        return np.log(probs)

    return log_probs


def _selection(path: str, min_improvement: float) -> dict[str, Any]:
    """What the finalist step did: the search's own pick (best score, or the default under
    tune.min_improvement, as without finalists) against the finalists' pick."""
    from search.results import read_sweep_meta

    source = read_sweep_meta(path).get("final_source") or {}
    finalists = source.get("finalists") or []
    if not finalists:
        return {"finalists": 0}
    by_search = max(finalists, key=lambda f: f["search_score"])
    default = [f for f in finalists if f["default_point"]]
    if default and by_search["search_score"] < default[0]["search_score"] + min_improvement:
        by_search = default[0]
    return {"finalists": len(finalists), "finalist_changed_winner":
            source.get("trial_id") != by_search["trial_id"],
            "finalists_not_reproducible": sum(not f["reproducible"] for f in finalists),
            "finalist_table": finalists}


def _val_majority(cfg) -> float:
    """The majority-class share of the (search) validation split: what learning nothing scores."""
    from search.sources import load_labeled_frame
    from search.splits import split_frame

    frame, names = load_labeled_frame(cfg.data)
    return _majority(split_frame(frame, cfg.data, names).validation["label"])


RUNNERS = {"tfidf": run_tfidf, "untuned": run_untuned, "untuned-probe": run_untuned_probe,
           "hf": run_hf, "sftune": run_sftune}


def _child(system: str, source: str, seed: int, budget: float, args, queue) -> None:
    from bench.sweep_vs_hf import TreeSampler, _stop_ray

    global CONFIG  # a spawned child imports this module afresh: the --config it was given
    CONFIG = Path(args.config)

    start = time.perf_counter()
    with TreeSampler() as tree:
        try:
            result = RUNNERS[system](source, seed, budget, args)
        except Exception as err:  # recorded, not hidden: a failing system is a finding
            result = {"error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-3000:]}
        finally:
            _stop_ray()
    result.update(wall_s=time.perf_counter() - start, tree_peak_rss_mib=tree.peak_mib)
    queue.put(result)


def measure(system: str, dataset: str, seed: int, budget: float, args) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(system, load(dataset).source, seed, budget, args,
                                            queue))
    proc.start()
    result = queue.get()
    proc.join()
    row = {"dataset": dataset, "system": system, "seed": seed, "budget_s": budget, **result}
    shown = {k: row.get(k) for k in ("test_accuracy", "test_f1_macro", "wall_s", "error",
                                     "test_accuracy_model_only", "lexical_weight") if k in row}
    print(f"=== {dataset} seed {seed} {system}: {shown}", flush=True)
    return row


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset and system: means +- sd over the seeds that ran without error."""
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for system in dict.fromkeys(r["system"] for r in runs if r["dataset"] == dataset):
            ok = [r for r in runs if r["dataset"] == dataset and r["system"] == system
                  and "error" not in r]
            rows.append({
                "dataset": dataset, "system": system, "seeds": len(ok),
                "test_accuracy": _mean_sd([r["test_accuracy"] for r in ok]),
                "test_f1_macro": _mean_sd([r["test_f1_macro"] for r in ok]),
                # sftune's transformer without its lexical layer ("-" for the other systems)
                "model_only_accuracy": _mean_sd([r["test_accuracy_model_only"] for r in ok
                                                 if "test_accuracy_model_only" in r]),
                "lexical_weights": " / ".join(f"{r['lexical_weight']:g}" for r in ok
                                              if "lexical_weight" in r) or "-",
                "wall_s": _mean_sd([r["wall_s"] for r in ok]).replace(".000", ""),
                "peak_rss_mib": max((r["tree_peak_rss_mib"] for r in ok), default=None),
                "at_majority": _majority_share(ok),
            })
    return rows


def _majority_share(runs: list[dict[str, Any]]) -> str:
    trials = sum(r.get("search_trials", 0) for r in runs)
    return f"{sum(r.get('trials_at_majority', 0) for r in runs)}/{trials}" if trials else "-"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["reviews"],
                        help="reviews, debates, speeches (default: reviews)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=None,
                        help="wall budget per system and seed, s (default: configs/default.yaml's"
                        " tune.time_budget_s, make run's)")
    parser.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--config", default=str(CONFIG),
                        help="the config every system's splits and sftune's sweep come from "
                        "(default: configs/default.yaml, make run's)")
    parser.add_argument("--untuned-lr", type=float, default=5e-5)
    parser.add_argument("--untuned-epochs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for sftune's side (repeatable)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, a 150 s budget, a small search: checks the harness")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budget, args.tag = [0], args.budget or 150.0, args.tag or "quick"
        args.set += ["tune.search_examples=600", "tune.search_eval_examples=300"]
    return args


def main() -> None:
    args = _parse()
    from search.config import load_config

    budget = args.budget or load_config(args.config).tune.time_budget_s
    runs = [measure(system, dataset, seed, budget, args)
            for dataset in args.datasets for seed in args.seeds for system in args.systems]
    rows = summarize(runs)
    columns = ["dataset", "system", "seeds", "test_accuracy", "test_f1_macro",
               "model_only_accuracy", "lexical_weights", "wall_s", "peak_rss_mib", "at_majority"]
    print_table(rows, columns)
    name = "quality" + (f"-{args.tag}" if args.tag else "")
    write_json(name, {"argv": sys.argv, "budget_s": budget, "summary": rows, "runs": runs,
                      "datasets": {d: load(d).description for d in args.datasets}})


if __name__ == "__main__":
    main()
