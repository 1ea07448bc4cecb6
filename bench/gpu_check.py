"""GPU checks: bf16 autocast in the Trainer, a sweep with fractional GPUs per trial, accuracy on
the full default data. Run on a CUDA machine with sftune and the built-in assets installed:

    python bench/gpu_check.py                     # all checks
    python bench/gpu_check.py --skip-full         # without the full-data 2-epoch run

Writes bench/results/gpu_check.json and prints a table per check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_json  # noqa: E402


def _cfg(*overrides: str):
    from search.config import load_config

    root = Path(__file__).resolve().parents[1]
    return load_config(root / "configs" / "default.yaml", ["train.device=cuda", *overrides])


def _train(cfg) -> dict:
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir
    from search.train import Trainer

    model_dir = resolve_model_dir(cfg.model.name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=data, model_dir=model_dir,
                      workdir=Path(tempfile.mkdtemp()))
    start = time.perf_counter()
    result = trainer.fit()
    return {"wall_s": time.perf_counter() - start, "history": result.history,
            "best": result.best, "train_examples": len(data.train)}


def check_autocast() -> list[dict]:
    """Same trial in fp32 and bf16 autocast: throughput, memory, and that bf16 still learns."""
    rows = []
    for bf16 in (False, True):
        out = _train(_cfg(f"train.bf16={str(bf16).lower()}", "space.joint_epochs=1",
                          "train.epochs=2", "train.prefix_cache=off"))
        for epoch in out["history"]:
            rows.append({"bf16": bf16, "epoch": epoch["epoch"], "stage": epoch["stage"],
                         "tokens_per_s": epoch["tokens_per_s"],
                         "val_accuracy": epoch["val_accuracy"],
                         "train_task_loss": epoch["train_task_loss"],
                         "peak_gpu_mem_mib": epoch["peak_gpu_mem_mib"]})
    return rows


def check_full_data() -> list[dict]:
    """`sftune train` at the default params on the whole default dataset, 2 epochs, fp32."""
    out = _train(_cfg("data.max_train_examples=null", "data.max_eval_examples=null",
                      "train.bf16=false"))
    return [{"epoch": h["epoch"], "stage": h["stage"], "val_accuracy": h["val_accuracy"],
             "val_f1_macro": h["val_f1_macro"], "train_examples": out["train_examples"],
             "tokens_per_s": h["tokens_per_s"], "wall_s": out["wall_s"]} for h in out["history"]]


def _max_overlap(frame) -> int:
    """Most trials running at the same moment, from each trial's first and last result time."""
    spans = frame.groupby("trial_id").agg(end=("timestamp", "max"), wall=("wall_time_s", "max"))
    events = sorted([(e - w, 1) for e, w in zip(spans["end"], spans["wall"], strict=True)]
                    + [(e, -1) for e in spans["end"]])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def check_fractional_sweep(gpus_per_trial: float, samples: int) -> list[dict]:
    from search.results import read_trials, summarize_trials
    from search.sweep import run_sweep

    concurrent = max(1, int(round(1 / gpus_per_trial)))
    cfg = _cfg(f"tune.gpus_per_trial={gpus_per_trial}", "tune.cpus_per_trial=2",
               f"tune.max_concurrent_trials={concurrent}", f"tune.num_samples={samples}",
               f"tune.storage_path={tempfile.mkdtemp()}")
    start = time.perf_counter()
    path = run_sweep(cfg, name="gpu-fractional")
    frame = read_trials(path)
    summary = summarize_trials(frame)
    return [{"gpus_per_trial": gpus_per_trial, "trials": len(summary),
             "max_concurrent_seen": _max_overlap(frame[frame["epoch"] > 0]),
             "all_on_gpu": bool((frame["peak_gpu_mem_mib"] > 0).all()),
             "peak_gpu_mem_mib_per_trial": float(frame["peak_gpu_mem_mib"].max()),
             "best_val_accuracy": float(summary["score"].max()),
             "wall_s": time.perf_counter() - start}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--gpus-per-trial", type=float, default=0.25)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    results = {"autocast": check_autocast()}
    print_table(results["autocast"], list(results["autocast"][0]))
    results["fractional_sweep"] = check_fractional_sweep(args.gpus_per_trial, args.samples)
    print_table(results["fractional_sweep"], list(results["fractional_sweep"][0]))
    if not args.skip_full:
        results["full_data"] = check_full_data()
        print_table(results["full_data"], list(results["full_data"][0]))
    write_json("gpu_check", {"args": vars(args), **results})


if __name__ == "__main__":
    main()
