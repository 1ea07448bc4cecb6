"""Serving under load: the sftune Serve endpoint against a naive FastAPI + pipeline server.

One run, same machine, same checkpoint (the default MiniLM with a fresh rotten/fresh head), same
real review texts:

1. **Ceiling**: the model's best pure forward rate, pre-tokenized, no HTTP, over batch sizes.
2. **Load**: closed-loop clients (1, 8, 32 by default), each sending one review per request and
   waiting for the answer, for a fixed time after a warm-up, against
   (a) ``sftune serve`` (Ray Serve, dynamic batching, length-sorted forward chunks) and
   (b) FastAPI + uvicorn + ``transformers.pipeline``, one request at a time.

Reported per system and client count: requests/s, p50/p99 latency, mean batch size, errors,
throughput as a fraction of the ceiling, and peak memory (replica and whole process tree).

    python bench/serve_load.py                       # CPU, ~4 min on 2 cores
    python bench/serve_load.py --device cuda         # on a GPU machine
    python bench/serve_load.py --smoke               # seconds-long check of the harness
    python bench/serve_load.py --set serve.num_threads=1 --set serve.forward_batch_size=16

Writes bench/results/serve_load.json (one section per device) and prints a table, ratios first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULT_JSON = ROOT / "bench" / "results" / "serve_load.json"
LABELS = ["rotten", "fresh"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=4.0, help="unmeasured seconds first")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="serve config override, e.g. serve.max_batch_size=32")
    parser.add_argument("--model", default="minilm", help="base model (built-in name or dir)")
    parser.add_argument("--random-weights", action="store_true",
                        help="random weights of the base's architecture (speed is the same)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny durations: checks the harness")
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    parser.add_argument("--role", choices=["main", "ceiling", "naive"], default="main",
                        help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.warmup, args.clients = 2.0, 1.0, "1,8"
    return args


def make_checkpoint(base: str, target: Path, *, random_weights: bool) -> Path:
    """The served model: the base encoder with a fresh, seeded rotten/fresh head."""
    import torch

    from search.artifacts import save_checkpoint
    from search.model import build_model, load_tokenizer, resolve_model_dir

    model_dir = resolve_model_dir(base)
    model = build_model(model_dir, label_names=LABELS, dropout=0.1, frozen_depth=0, seed=0)
    if random_weights:  # for machines that carry the config and tokenizer but not the weights
        torch.manual_seed(0)
        model.classifier.init_weights()
    meta = {"label_names": LABELS, "trial_id": "bench", "params": {}, "metrics": {},
            "base_model": base, "random_weights": random_weights}
    return save_checkpoint(target, model=model.classifier, tokenizer=load_tokenizer(model_dir),
                           meta=meta)


def review_texts(limit: int = 4000) -> list[str]:
    """Real reviews from the default data, shuffled with a fixed seed."""
    from search.config import DataConfig
    from search.sources import load_labeled_frame

    frame, _ = load_labeled_frame(DataConfig())
    return frame["text"].sample(frac=1.0, random_state=0).head(limit).tolist()


def _load_model(checkpoint: str, device: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from serving.sizing import default_threads

    if device == "cpu":
        torch.set_num_threads(default_threads())
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, use_safetensors=True)
    return model.eval().to(device=device, dtype=dtype), AutoTokenizer.from_pretrained(checkpoint)


def _forward_rate(model, batches: list[dict], device: str, seconds: float) -> float:
    """Sequences per second over pre-tokenized batches, after a warm-up."""
    import torch

    def run(batch):
        model(**{k: v.to(device) for k, v in batch.items()})

    # A GPU's first forward of each shape pays for kernel plans and autotuning
    # (bench/gpu_shapes.py), which is no part of the model's rate: warm every batch once there.
    with torch.inference_mode():
        for batch in batches if device == "cuda" else batches[:2]:
            run(batch)
        _sync(device)
        done = sequences = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = batches[done % len(batches)]
            run(batch)
            done, sequences = done + 1, sequences + len(batch["input_ids"])
        _sync(device)
    return sequences / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def measure_ceiling(checkpoint: str, device: str, seconds: float) -> dict[str, Any]:
    """Best forward rate over batch sizes: batches in arrival (random) order, padded per batch."""
    model, tokenizer = _load_model(checkpoint, device)
    texts = review_texts(2048)
    sizes = [1, 8, 16, 32] if device == "cpu" else [1, 8, 32, 64, 128, 256]
    rates = {}
    for size in sizes:
        batches = [tokenizer(texts[i:i + size], padding=True, truncation=True, max_length=512,
                             return_tensors="pt") for i in range(0, len(texts), size)]
        rates[str(size)] = _forward_rate(model, batches, device, seconds)
    best = max(rates, key=rates.get)
    return {"seq_per_s_by_batch": rates, "best_batch": int(best), "ceiling_seq_per_s": rates[best]}


def naive_app(checkpoint: str, device: str):
    """The baseline: FastAPI + a transformers pipeline, one request at a time."""
    import resource

    import torch
    from fastapi import FastAPI
    from transformers import pipeline

    from serving.sizing import default_threads

    if device == "cpu":
        torch.set_num_threads(default_threads())
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    classify = pipeline("text-classification", model=checkpoint, top_k=None, device=device,
                        dtype=dtype)
    lock, app = threading.Lock(), FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> dict:
        with lock:  # one request at a time: no batching, no concurrent forwards
            return {"predictions": classify(body["text"])}

    @app.get("/stats")
    def stats() -> dict:
        gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_rss_mib": rss, "gpu_peak_mib": gpu, "replica": f"pid-{os.getpid()}"}

    return app


def run_naive(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(naive_app(args.checkpoint, args.device), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str, timeout: float = 10.0) -> Any:
    import requests

    return requests.get(url, timeout=timeout).json()


def _wait_up(url: str, proc: subprocess.Popen | None, timeout_s: float = 300) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/stats", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


class MemorySampler(threading.Thread):
    """Peak summed RSS of a process and all its descendants (Ray's raylet, proxy, replica...)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mib, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.wait(0.25):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                total = sum(_rss(p) for p in procs)
            except psutil.Error:
                continue
            self.peak_mib = max(self.peak_mib, total / 2**20)


def _rss(proc) -> int:
    import psutil

    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _client(port: int, texts: list[str], first: int, step: int, stop_at: float,
            record: list, path: str = "/predict") -> None:
    """One closed-loop client: send, wait for the answer, send the next (keep-alive).

    ``path`` other than /predict is fetched with GET: the HTTP path alone, no model.
    """
    conn, i = http.client.HTTPConnection("127.0.0.1", port, timeout=60), first
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < stop_at:
        body = json.dumps({"text": texts[i % len(texts)]}) if path == "/predict" else None
        start = time.perf_counter()
        try:
            if body is None:
                conn.request("GET", path)
            else:
                conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        end = time.perf_counter()
        record.append((end, end - start, ok))
        i += step
    conn.close()


def replica_stats(url: str, replicas: int = 1, tries: int = 200) -> dict[str, Any]:
    """``/stats`` summed over every replica: each call is answered by whichever replica gets it."""
    seen: dict[str, dict] = {}
    for _ in range(tries):
        stats = _get_json(f"{url}/stats")
        seen[stats.get("replica", "only")] = stats
        if len(seen) >= replicas:
            break
    total = {key: sum(s.get(key, 0) for s in seen.values())
             for key in ("requests", "texts", "batches")}
    total["replicas"] = len(seen)
    for key in ("peak_rss_mib", "gpu_peak_mib"):
        values = [s[key] for s in seen.values() if s.get(key) is not None]
        total[key] = max(values) if values else None
    return total


def run_load(url: str, texts: list[str], clients: int, warmup: float,
             duration: float, replicas: int = 1, path: str = "/predict") -> dict[str, Any]:
    """Closed-loop load; only requests that finish inside the measured window count."""
    port = int(url.rsplit(":", 1)[1])
    record: list = []
    begin = time.perf_counter()
    window = (begin + warmup, begin + warmup + duration)
    threads = [threading.Thread(target=_client,
                                args=(port, texts, k, clients, window[1], record, path))
               for k in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    before = replica_stats(url, replicas)
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    after = replica_stats(url, replicas)
    for thread in threads:
        thread.join(120)
    return _summarize(record, window, clients, before, after)


def _summarize(record: list, window: tuple[float, float], clients: int, before: dict,
               after: dict) -> dict[str, Any]:
    import numpy as np

    inside = [(lat, ok) for end, lat, ok in record if window[0] <= end <= window[1]]
    latencies = np.array([lat for lat, ok in inside if ok]) * 1000
    batches = after.get("batches", 0) - before.get("batches", 0)
    texts = after.get("texts", 0) - before.get("texts", 0)
    return {
        "clients": clients,
        "req_per_s": len(latencies) / (window[1] - window[0]),
        "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "errors": sum(1 for _, ok in inside if not ok),
        "mean_batch": texts / batches if batches else 1.0,
    }


def _sweep_clients(url: str, texts: list[str], args: argparse.Namespace,
                   replicas: int = 1) -> list[dict]:
    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        row = run_load(url, texts, clients, args.warmup, args.duration, replicas)
        print(f"  {clients:>3} clients: {row['req_per_s']:.1f} req/s, p99 {row['p99_ms']} ms",
              flush=True)
        rows.append(row)
    return rows


def _serve_config(args: argparse.Namespace):
    from search.config import load_config

    device = [f"serve.device={args.device}"]
    if args.device == "cuda" and not any("gpus_per_replica" in o for o in args.overrides):
        device.append("serve.gpus_per_replica=1")  # else Ray hides the GPU from the replica
    return load_config(None, [f"serve.port={free_port()}", *device, *args.overrides]).serve


def bench_sftune(checkpoint: Path, texts: list[str], args: argparse.Namespace,
                 workdir: Path) -> dict[str, Any]:
    """`sftune serve --detach` on the checkpoint, then the client sweep."""
    from serving import deploy
    from serving.sizing import replica_count

    os.environ["SFTUNE_STATE_DIR"] = str(workdir / "state")
    cfg = _serve_config(args)
    print(f"sftune serve: starting on port {cfg.port}", flush=True)
    url = deploy.start_background(checkpoint, cfg)
    sampler = MemorySampler(deploy.read_state(cfg.port).pid)
    sampler.start()
    replicas = replica_count(cfg)
    try:
        rows = _sweep_clients(url, texts, args, replicas)
        # The same server and clients with no model: what HTTP alone allows at the most clients.
        http_only = run_load(url, texts, rows[-1]["clients"], args.warmup, args.duration,
                             replicas, path="/healthz")
        print(f"  GET /healthz at {rows[-1]['clients']} clients: "
              f"{http_only['req_per_s']:.1f} req/s", flush=True)
        stats = replica_stats(url, replicas)
    finally:
        sampler.stop.set()
        deploy.stop(cfg)
    return {"system": "sftune", "rows": rows, "http_only_req_per_s": http_only["req_per_s"],
            "replica_peak_rss_mib": stats["peak_rss_mib"],
            "gpu_peak_mib": stats["gpu_peak_mib"], "tree_peak_rss_mib": sampler.peak_mib,
            "serve_config": cfg.model_dump()}


def bench_naive(checkpoint: Path, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The FastAPI + pipeline baseline in its own process, then the same client sweep."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"naive baseline: starting on port {port}", flush=True)
    # Same OpenMP setting as the sftune replica, so the comparison is about serving alone: with
    # spinning idle threads this baseline collapses whenever another process wants a core.
    proc = subprocess.Popen([sys.executable, __file__, "--role", "naive", "--checkpoint",
                             str(checkpoint), "--port", str(port), "--device", args.device],
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    sampler = MemorySampler(proc.pid)
    try:
        _wait_up(url, proc)
        sampler.start()
        rows = _sweep_clients(url, texts, args)
        stats = replica_stats(url)
    finally:
        sampler.stop.set()
        proc.terminate()
        proc.wait(30)
    return {"system": "naive", "rows": rows, "replica_peak_rss_mib": stats["peak_rss_mib"],
            "gpu_peak_mib": stats["gpu_peak_mib"], "tree_peak_rss_mib": sampler.peak_mib}


def ceiling_in_subprocess(checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The ceiling with OpenMP's idle threads spinning (its default) and sleeping: the best."""
    seconds = "0.5" if args.smoke else "2"
    print("ceiling: pure forward over batch sizes", flush=True)
    runs = {}
    for policy in ("ACTIVE", "PASSIVE") if args.device == "cpu" else ("PASSIVE",):
        out = subprocess.run([sys.executable, __file__, "--role", "ceiling", "--checkpoint",
                              str(checkpoint), "--device", args.device, "--duration", seconds],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_WAIT_POLICY": policy})
        runs[policy] = json.loads(out.stdout.strip().splitlines()[-1])
    best = max(runs, key=lambda p: runs[p]["ceiling_seq_per_s"])
    return {**runs[best], "omp_wait_policy": best, "by_omp_wait_policy": runs}


def ratio_rows(ceiling: float, systems: list[dict]) -> list[dict[str, Any]]:
    by = {s["system"]: {r["clients"]: r for r in s["rows"]} for s in systems}
    rows = []
    for clients, ours in by["sftune"].items():
        naive = by.get("naive", {}).get(clients)
        rows.append({
            "clients": clients,
            "sftune/naive": ours["req_per_s"] / naive["req_per_s"] if naive else None,
            "sftune/ceiling": ours["req_per_s"] / ceiling,
            "naive/ceiling": naive["req_per_s"] / ceiling if naive else None,
        })
    return rows


def absolute_rows(systems: list[dict]) -> list[dict[str, Any]]:
    keep = ("replica_peak_rss_mib", "tree_peak_rss_mib", "gpu_peak_mib")
    return [{"system": s["system"], **row, **{k: s[k] for k in keep}}
            for s in systems for row in s["rows"]]


def check_targets(device: str, ratios: list[dict], systems: list[dict]) -> dict[str, bool]:
    """The issue's targets, at the largest client count."""
    top = max(ratios, key=lambda r: r["clients"])
    ours = max(systems[0]["rows"], key=lambda r: r["clients"])
    vs_naive = top["sftune/naive"] or 0.0
    if device == "cuda":
        return {"sftune >= 3x naive": vs_naive >= 3,
                "sftune >= 70% of ceiling": top["sftune/ceiling"] >= 0.7}
    return {"sftune >= 75% of ceiling": top["sftune/ceiling"] >= 0.75,
            "zero errors": all(r["errors"] == 0 for s in systems for r in s["rows"]),
            "p99 < 2 s": (ours["p99_ms"] or 1e9) < 2000,
            "sftune >= naive": vs_naive >= 1}


RATIO_COLUMNS = ["clients", "sftune/naive", "sftune/ceiling", "naive/ceiling"]
ABSOLUTE_COLUMNS = ["system", "clients", "req_per_s", "p50_ms", "p99_ms", "mean_batch", "errors",
                    "replica_peak_rss_mib", "tree_peak_rss_mib", "gpu_peak_mib"]


def report(device: str, ceiling: dict, systems: list[dict], args: argparse.Namespace) -> dict:
    from bench.common import machine, print_table

    ratios = ratio_rows(ceiling["ceiling_seq_per_s"], systems)
    section = {
        "command": " ".join(["python bench/serve_load.py", *sys.argv[1:]]),
        "machine": machine(), "ceiling": ceiling, "ratios": ratios,
        "absolute": absolute_rows(systems), "targets": check_targets(device, ratios, systems),
        "http_only_req_per_s": systems[0].get("http_only_req_per_s"),
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup,
                     "random_weights": args.random_weights,
                     "serve_config": systems[0].get("serve_config")},
    }
    print(f"\nceiling: {ceiling['ceiling_seq_per_s']:.1f} seq/s at batch {ceiling['best_batch']} "
          f"(by batch: { {k: round(v, 1) for k, v in ceiling['seq_per_s_by_batch'].items()} })")
    print_table(ratios, RATIO_COLUMNS)
    print()
    print_table(section["absolute"], ABSOLUTE_COLUMNS)
    print(f"\ntargets: {section['targets']}")
    return section


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "-" if value is None else str(value)


def _md_table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]


def markdown(results: dict[str, dict]) -> str:
    """bench/results/serve_load.md: every device's tables with the command that made them."""
    lines = ["# Serving under load (`bench/serve_load.py`)", ""]
    for device, section in results.items():
        info = section["machine"]
        ceiling = section["ceiling"]
        name, _, overrides = device.partition(" ")
        lines += [f"## {name.upper()}{' ' + overrides if overrides else ''}: "
                  f"{info.get('gpu') or info['processor']}, "
                  f"{info['cpu_cores']} cores, {info['date']}", "",
                  f"Command: `{section['command']}`", "",
                  f"Ceiling: {ceiling['ceiling_seq_per_s']:.1f} seq/s at batch "
                  f"{ceiling['best_batch']} (pure forward, pre-tokenized, no HTTP).", "",
                  *_md_table(section["ratios"], RATIO_COLUMNS), "",
                  *_md_table(section["absolute"], ABSOLUTE_COLUMNS), "",
                  "Targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}"
                                          for k, v in section["targets"].items()), "",
                  *_notes(section), ""]
    return "\n".join(lines)


def _notes(section: dict) -> list[str]:
    ceiling, machine_info = section["ceiling"], section["machine"]
    top = max(row["clients"] for row in section["ratios"])
    notes = [f"- 1-minute load average at the end: {machine_info.get('load_average_1m', 0):.1f}."]
    if machine_info["cpu_cores"] <= 2:
        notes.append("- This 2-core host's speed drifts by up to ~30% between minutes, so absolute"
                     " figures drift run to run; each row's ratios come from one run.")
    notes.append("- The ceiling runs batches in arrival (random) order, padded per batch; sftune"
                 " sorts the texts of each merged batch by length before its forward chunks,"
                 " which is how it can exceed 1.0.")
    at_top = ceiling["seq_per_s_by_batch"].get(str(top))
    if at_top:
        notes.append(f"- Ceiling at batch {top}, the largest batch {top} closed-loop clients can"
                     f" form: {at_top:.1f} seq/s.")
    if section.get("http_only_req_per_s"):
        notes.append(f"- The same server answering `GET /healthz` (HTTP alone, no model) to {top}"
                     f" clients: {section['http_only_req_per_s']:.1f} req/s, a bound on any"
                     " model served through it.")
    policies = {p: round(r["ceiling_seq_per_s"], 1)
                for p, r in ceiling.get("by_omp_wait_policy", {}).items()}
    if policies:
        notes.append(f"- Ceiling by OpenMP wait policy (seq/s): {policies}; both servers run"
                     " with PASSIVE.")
    return notes


def section_key(args: argparse.Namespace) -> str:
    """One JSON section per device and set of serve overrides (e.g. the HAProxy ingress)."""
    return " ".join([args.device, *sorted(args.overrides)])


def write_results(key: str, section: dict) -> None:
    """Replace this key's section of the JSON (other runs' sections stay) and the markdown."""
    results = json.loads(RESULT_JSON.read_text()) if RESULT_JSON.is_file() else {}
    results[key] = section
    RESULT_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULT_JSON.write_text(json.dumps(results, indent=2, default=str))
    RESULT_JSON.with_suffix(".md").write_text(markdown(results))
    print(f"wrote {RESULT_JSON} and {RESULT_JSON.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "ceiling":
        print(json.dumps(measure_ceiling(args.checkpoint, args.device, args.duration)))
        return 0
    if args.role == "naive":
        run_naive(args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    checkpoint = make_checkpoint(args.model, workdir / "model", random_weights=args.random_weights)
    texts = review_texts()
    ceiling = ceiling_in_subprocess(checkpoint, args)
    systems = [bench_sftune(checkpoint, texts, args, workdir)]
    if not args.skip_naive:
        systems.append(bench_naive(checkpoint, texts, args))
    section = report(args.device, ceiling, systems, args)
    if not args.no_write:
        write_results(section_key(args), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
