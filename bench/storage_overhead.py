"""What a bucket costs a sweep: the same sweep with local storage and with an S3 bucket (a real
S3-compatible server, moto's, on 127.0.0.1), one after the other on the same cores.

The workload is fixed, not time-budgeted, so both sides do the same work: the built-in MiniLM
and reviews, 4 search trials of one pass over 1,000 reviews each (checkpoints of the real
model, 2 at a time), then the final trial on 2,000 reviews for one epoch, tested and exported.

    .venv/bin/python bench/storage_overhead.py            # about 8 minutes on 2 cores
    .venv/bin/python bench/storage_overhead.py --smoke    # the tiny smoke config: the harness

Reports each side's wall time, the process tree's peak memory, the bytes left in the storage
(and per trial), and the bucket/local ratios. Writes bench/results/storage_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, write_json  # noqa: E402
from bench.main_job import run  # noqa: E402
from search import storage  # noqa: E402
from tests.s3server import create_bucket, environment, s3_server  # noqa: E402

WORKLOAD = ["tune.time_budget_s=null", "tune.num_samples=4", "tune.search_examples=1000",
            "data.max_train_examples=2000", "train.epochs=1", "tune.optuna_db=false"]
NAME = "main-job"  # what bench/main_job.run names the sweep


def measure(config: Path, root: str, overrides: list[str]) -> dict:
    row = run(config, root, overrides)
    from search.results import read_trials, summarize_trials

    experiment = storage.join(root, NAME)
    trials = len(summarize_trials(read_trials(experiment)))
    stored = storage.total_size(experiment)
    return {"wall_s": row["wall_s"], "tree_peak_rss_mib": row["tree_peak_rss_mib"],
            "trials": trials, "stored_mib": stored / 2**20,
            "stored_mib_per_trial": stored / 2**20 / max(trials, 1), "command": row["command"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="configs/smoke.yaml, seconds")
    args = parser.parse_args()
    config = ROOT / "configs" / ("smoke.yaml" if args.smoke else "default.yaml")
    overrides = [] if args.smoke else WORKLOAD
    with tempfile.TemporaryDirectory() as tmp:
        local = {"storage": "local", **measure(config, str(Path(tmp) / "runs"), overrides)}
        with s3_server(Path(tmp) / "s3.log") as env, environment(env):
            bucket = create_bucket(env, "bench")
            remote = {"storage": "s3 (moto, 127.0.0.1)",
                      **measure(config, storage.join(bucket, "sweeps"), overrides)}
    ratios = {f"bucket/local {k}": remote[k] / local[k]
              for k in ("wall_s", "tree_peak_rss_mib", "stored_mib")}
    print_table([local, remote], ["storage", "wall_s", "tree_peak_rss_mib", "trials",
                                  "stored_mib", "stored_mib_per_trial"])
    print(json.dumps(ratios, indent=1))
    write_json("storage_overhead" + ("-smoke" if args.smoke else ""),
               {"config": str(config), "overrides": overrides, "local": local, "bucket": remote,
                "ratios": ratios})


if __name__ == "__main__":
    main()
