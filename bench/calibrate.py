r"""Calibration runs of the default space: single trials of the one Trainer, no Ray, no search.

Two fidelities, the two a default sweep trains at:

- ``search``: one pass over the sweep's stratified 2,000-review subset, scored every 250 reviews
  on its 500 validation reviews: how soon a point leaves the majority class, and where ASHA's
  first rung can fall without cutting on noise;
- ``full``: all ~10,200 training reviews for ``--epochs`` epochs, scored per epoch on the whole
  validation split, then tested once: what a point is worth when trained in full.

    .venv/bin/python bench/calibrate.py search 1e-4,0,0 2e-4,0,0 5e-5,0,0
    .venv/bin/python bench/calibrate.py full 1e-4,0,0 5e-5,0,0 --epochs 3

Each point is ``lr,frozen_depth,joint_epochs[,alpha]`` (task loss only when joint_epochs is 0;
alpha defaults to the space's default). ``--seeds`` runs every point on each split seed: the
joint-vs-task ablation in BENCHMARKS.md is

    .venv/bin/python bench/calibrate.py search 1e-4,0,0 1e-4,0,1,30 1e-4,0,1,300 \
        1e-4,0,1,3000 --seeds 0 1 2 --tag joint

Writes bench/results/calibrate-<fidelity>[-TAG].json and prints one line per run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_json  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"


def _point_overrides(point: str) -> list[str]:
    # Constants, not range defaults: a point may lie outside the shipped space.
    lr, depth, joint, *alpha = point.split(",")
    pairs = [f"space.lr={lr}", f"space.frozen_depth={depth}", f"space.joint_epochs={joint}"]
    return pairs + [f"space.alpha={a}" for a in alpha]


def run_point(fidelity: str, point: str, seed: int, args: argparse.Namespace) -> dict:
    from search.best import evaluate_checkpoint
    from search.config import load_config
    from search.data import prepare_data, subset
    from search.model import load_tokenizer, resolve_model_dir
    from search.train import Trainer

    shape = (["train.epochs=1", "train.eval_every=250"] if fidelity == "search"
             else [f"train.epochs={args.epochs}", "train.eval_every=null"])
    cfg = load_config(CONFIG, [f"data.split_seed={seed}", "train.patience=100",
                               "tune.time_budget_s=null", *shape, *_point_overrides(point),
                               *args.set])
    model_dir = resolve_model_dir(cfg.model.name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))
    if fidelity == "search":
        data = subset(data, train=cfg.tune.search_examples,
                      validation=cfg.tune.search_eval_examples, seed=cfg.data.split_seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(cfg=cfg, params=cfg.default_params(), data=data, model_dir=model_dir,
                         workdir=Path(tmp)).fit()
        test = evaluate_checkpoint(result.checkpoint_dir, cfg) if fidelity == "full" else {}
    curve = [round(h["val_accuracy"], 4) for h in result.history]
    return {"point": point, "seed": seed, "examples": [h["examples"] for h in result.history],
            "val_accuracy": curve, "seconds": time.perf_counter() - start, **test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fidelity", choices=("search", "full"))
    parser.add_argument("points", nargs="+", help="lr,frozen_depth,joint_epochs[,alpha]")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="split seeds")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run (repeatable)")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        for point in args.points:
            runs.append(run_point(args.fidelity, point, seed, args))
            print({k: v for k, v in runs[-1].items() if k != "test_loss"}, flush=True)
    name = f"calibrate-{args.fidelity}" + (f"-{args.tag}" if args.tag else "")
    write_json(name, {"argv": sys.argv, "runs": runs, "summary": summarize(runs)})


def summarize(runs: list[dict]) -> list[dict]:
    """Per point: the final and best validation accuracy and the seconds, mean and sd over seeds."""
    rows = []
    for point in dict.fromkeys(r["point"] for r in runs):
        mine = [r for r in runs if r["point"] == point]
        row = {"point": point, "seeds": len(mine)}
        for key, values in (("final_val", [r["val_accuracy"][-1] for r in mine]),
                            ("best_val", [max(r["val_accuracy"]) for r in mine]),
                            ("seconds", [r["seconds"] for r in mine])):
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row[key] = f"{statistics.mean(values):.3f} ± {sd:.3f}"
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    main()
