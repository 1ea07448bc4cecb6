"""Sweeps on a real multi-node Ray cluster (a head and two worker nodes started with `ray start`
on this machine) with their storage in a bucket on a real S3 server on 127.0.0.1:

- the README's workflow: `ray job submit` through the head's Jobs API, trials on both workers,
  everything in the bucket, and `sftune results` / `sftune best` / the dashboard reading it back
  from outside the job;
- a worker node killed mid-sweep (its raylet, by pid): its trial resumes on the other node from
  its last checkpoint; then the driver SIGKILLed and `--resume`d from the bucket: exactly
  `num_samples` trials, and no finished trial lost or run again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from search import storage
from search.results import read_sweep_meta, read_trials, summarize_trials
from tests.raycluster import LocalCluster

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SFTUNE = str(Path(sys.executable).with_name("sftune"))
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster(s3_env, tmp_path_factory):
    """Head (0 CPUs, as in cluster.yaml: it trains nothing) + two 1-CPU workers. Started after
    the AWS_* variables are set, so every node reaches the bucket."""
    local = LocalCluster(workdir=tmp_path_factory.mktemp("ray-cluster"))
    # The drivers, `ray job submit` and `sftune` below inherit the cluster's auth token.
    with pytest.MonkeyPatch.context() as env:
        for key, value in local.auth_env().items():
            env.setenv(key, value)
        try:
            # One at a time: nodes of one machine share Ray's session directory, and two
            # raylets starting at once can pick the same socket name (one then fails to bind).
            for start in (local.start_head, lambda: local.add_worker(1, "worker_a"),
                          lambda: local.add_worker(1, "worker_b")):
                start()
                local.node_ids = local.wait_for_nodes()
            yield local
        finally:
            local.stop()


def _config(path: Path, model_dir: Path, data: Path, epochs: int = 3, **tune: object) -> Path:
    config = {
        "model": {"name": str(model_dir)},
        "data": {"source": str(data), "max_length": 16},
        "train": {"epochs": epochs, "batch_size": 8, "eval_batch_size": 32, "patience": 10},
        "space": {"alpha": 1, "lr": {"low": 0.0005, "high": 0.005, "log": True},
                  "frozen_depth": {"low": 0, "high": 2}, "dropout": 0.0, "weight_decay": 0.01},
        "tune": {"max_concurrent_trials": 2, "cpus_per_trial": 1, "finalists": 0, **tune},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _sftune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([SFTUNE, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"sftune {' '.join(args)} ran over {timeout} s:\n"
                             f"{(err.stderr or b'').decode(errors='replace')[-4000:]}") from None


def test_a_job_submitted_sweep_runs_on_both_workers_and_reads_back_from_the_bucket(
    cluster, bucket, tiny_model_dir, reviews_csv, tmp_path
):
    from transformers import pipeline

    from dashboard import loaders

    root = storage.join(bucket, "sweeps")
    config = _config(tmp_path / "sweep.yaml", tiny_model_dir, reviews_csv, num_samples=4,
                     search_examples=64, search_eval_examples=32, keep_checkpoints=1)
    # As the README runs it: the repo as the job's working dir, the sweep joining the cluster.
    job = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.jobs_address, "--working-dir", str(REPO),
         "--", SFTUNE, "sweep", "--config", str(config), "--address", "auto", "--name", "multi",
         "--set", f"tune.storage_path={root}"],
        capture_output=True, text=True, timeout=420)
    assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-4000:]

    path = storage.join(root, "multi")
    trials = read_trials(path)
    workers = {cluster.node_ids["worker_a"], cluster.node_ids["worker_b"]}
    assert set(trials["node"].dropna()) == workers  # both workers trained; the head did not
    summary = summarize_trials(trials)
    assert sorted(summary["phase"]) == ["final"] + ["search"] * 4
    assert (summary["status"] == "TERMINATED").all()
    assert summary["checkpoint"].dropna().str.startswith(f"{bucket}/").all()
    meta = read_sweep_meta(path)
    assert meta["status"] == "finished" and meta["export_dir"] == storage.join(path, "export")

    # From outside the job, with nothing but the bucket's URI:
    listed = _sftune("results", "multi", "--storage", root)
    assert listed.returncode == 0 and summary["trial_id"].iloc[0] in listed.stdout, listed.stderr
    best = _sftune("best", "multi", "--storage", root, "--export", str(tmp_path / "best"))
    assert best.returncode == 0, best.stderr[-3000:]
    scores = pipeline("text-classification", model=str(tmp_path / "best"))(["great fun"])
    assert scores[0]["label"] in {"neg", "pos"}
    loaded = loaders.load_sweep(path)
    assert loaded.name == "multi" and len(loaded.table) == 5
    assert loaders.sweep_row(path)["problem"] == ""


def test_the_embedded_default_starts_its_own_ray_beside_a_running_cluster(cluster):
    # `ray start --head` left its address where a bare ray.init() would join it; sftune's
    # default (no --address, no RAY_ADDRESS) must still start a Ray of its own.
    script = ("import ray; from search.config import load_config; from search.sweep import "
              "_init_ray; _init_ray(load_config(None, ['tune.num_cpus=1']), None); "
              "print('GCS', ray.get_runtime_context().gcs_address)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    gcs = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("GCS"))
    assert not gcs.endswith(f":{cluster.gcs_port}")


def _tune_snapshot(path: str) -> dict[str, str]:
    """{trial id: status} in Tune's newest experiment snapshot in the bucket (what a restore
    reads), {} while none is readable."""
    fs, root = storage.filesystem(path)
    try:
        files = fs.get_file_info(pafs.FileSelector(root))
    except (FileNotFoundError, OSError):
        return {}
    states = sorted(f.path for f in files if Path(f.path).name.startswith("experiment_state-"))
    if not states:
        return {}
    try:
        with fs.open_input_stream(states[-1]) as stream:
            entries = json.loads(stream.readall())["trial_data"]
    except (OSError, ValueError, KeyError):
        return {}  # being rewritten
    return {trial["trial_id"]: trial["status"] for trial in (json.loads(raw) for raw, _ in entries)}


def _finished_in_snapshot(path: str) -> set[str] | None:
    done = {trial for trial, status in _tune_snapshot(path).items() if status == "TERMINATED"}
    return done if len(done) >= 2 else None


def _wait(condition, proc: subprocess.Popen, what: str, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"driver exited early: {proc.stderr.read()[-3000:]}"
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _running_on(path: str, node: str):
    """A trial running on ``node`` that has a checkpoint, once some trial has finished."""
    trials = summarize_trials(read_trials(path))
    if not (trials["status"] == "TERMINATED").any():
        return None
    rows = read_trials(path)
    running = rows[(rows["status"] == "RUNNING") & (rows["node"] == node)
                   & rows["checkpoint"].notna()]
    return running["trial_id"].iloc[0] if len(running) else None


def _moved(path: str, trial_id: str, old: str, new: str) -> bool:
    """The trial kept its rows from ``old`` and went on past them on ``new``."""
    rows = read_trials(path)
    rows = rows[rows["trial_id"] == trial_id].sort_values("epoch")
    return len(rows) >= 2 and rows["node"].iloc[0] == old and rows["node"].iloc[-1] == new


def test_a_killed_worker_node_and_a_killed_driver_lose_no_finished_trial(
    cluster, bucket, tiny_model_dir, reviews_csv, tmp_path
):
    samples = 5
    root = storage.join(bucket, "sweeps")
    # Many short epochs, and no ASHA cut before the end, keep each trial running (and
    # reporting) for several seconds: long enough to be seen on a node and hit there.
    config = _config(tmp_path / "sweep.yaml", tiny_model_dir, reviews_csv, num_samples=samples,
                     max_failures=2, storage_path=root, optuna_db=False, grace_period=10**6,
                     epochs=25)
    config_args = ["--config", str(config), "--address", cluster.address, "--no-export"]
    path = storage.join(root, "faults")
    a, b = cluster.node_ids["worker_a"], cluster.node_ids["worker_b"]
    driver = subprocess.Popen([SFTUNE, "sweep", *config_args, "--name", "faults"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        victim = _wait(lambda: _running_on(path, b), driver, "a checkpointed trial on worker_b")
        cluster.node("worker_b").raylet().send_signal(signal.SIGKILL)
        _wait(lambda: _moved(path, victim, b, a), driver, f"trial {victim} to go on on worker_a")
        finished = _wait(lambda: _finished_in_snapshot(path), driver, "finished trials")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = read_trials(path)
    assert len(summarize_trials(before)) < samples or not before["status"].eq("TERMINATED").all()

    resumed = _sftune("sweep", *config_args, "--resume", "faults", timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = read_trials(path)
    summary = summarize_trials(after)
    assert len(summary) == samples and summary["trial_id"].is_unique
    assert (summary["status"] == "TERMINATED").all()
    assert set(after["node"].dropna()) <= {a, b}
    columns = ["trial_id", "epoch", "timestamp", "val_accuracy"]
    kept = [frame[frame["trial_id"].isin(finished)].sort_values(columns[:2])[columns]
            for frame in (before, after)]
    assert kept[0].to_numpy().tolist() == kept[1].to_numpy().tolist()
