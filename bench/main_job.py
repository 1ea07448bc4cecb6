"""The main job's cost: `sftune sweep --config configs/default.yaml` end to end, as `make run`
does it, with its wall time and the peak memory of its whole process tree (driver, Ray, trials).

    .venv/bin/python bench/main_job.py                  # the 560 s budget, plus start and export
    .venv/bin/python bench/main_job.py --config configs/smoke.yaml

Writes bench/results/main_job.json and prints one table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, write_json  # noqa: E402


def _tree_rss_mib(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def _watch(proc: psutil.Process, peak: list[float], done: threading.Event) -> None:
    while not done.is_set():
        try:
            peak[0] = max(peak[0], _tree_rss_mib(proc))
        except psutil.Error:
            return
        done.wait(1.0)


def run(config: Path, storage: Path | str, overrides: list[str] = ()) -> dict:
    """Run the sweep as a user would (storage: a directory or a bucket URI); its wall time and
    the peak memory of its process tree."""
    sftune = Path(sys.executable).with_name("sftune")
    command = [str(sftune), "sweep", "--config", str(config), "--name", "main-job",
               "--set", f"tune.storage_path={storage}"]
    for override in overrides:
        command += ["--set", override]
    peak, done = [0.0], threading.Event()
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = threading.Thread(target=_watch, args=(psutil.Process(child.pid), peak, done))
    watcher.start()
    output, _ = child.communicate()
    done.set()
    watcher.join()
    if child.returncode != 0:
        raise SystemExit(f"sweep failed ({child.returncode}):\n{output[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "tree_peak_rss_mib": peak[0],
            "command": " ".join(command[1:]), "tail": output.splitlines()[-4:]}


def summarize(storage: Path) -> dict:
    from search.results import read_sweep_meta, read_trials, summarize_trials

    experiment = storage / "main-job"
    frame = read_trials(experiment)
    summary = summarize_trials(frame)
    meta = read_sweep_meta(experiment)
    test = next(iter((meta.get("test") or {}).values()), {})
    return {
        "trials": len(summary), "epochs_run": int(summary["epochs"].sum()),
        "asha_stopped": int((summary["stop_reason"] == "asha_stopped").sum()),
        "best_val_accuracy": float(summary["score"].max()),
        "test_accuracy": test.get("test_accuracy"),
        "trial_peak_rss_mib": float(frame["peak_rss_mib"].max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        row = {**run(args.config, Path(tmp)), **summarize(Path(tmp))}
    columns = ["wall_s", "tree_peak_rss_mib", "trial_peak_rss_mib", "trials", "epochs_run",
               "asha_stopped", "best_val_accuracy", "test_accuracy"]
    print_table([row], columns)
    print("\n".join(row.pop("tail")))
    write_json("main_job", {"config": str(args.config), "result": row})
    print(json.dumps({k: row[k] for k in columns}))


if __name__ == "__main__":
    main()
