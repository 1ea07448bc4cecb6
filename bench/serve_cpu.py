"""Where the CPU goes under load: CPU milliseconds per request of each process on the machine.

Starts ``sftune serve`` on the default MiniLM (as ``bench/serve_load.py`` does), warms it up, then
runs closed-loop clients for a fixed window and reads every process's CPU time before and after.
It answers "which process is the bottleneck" for the serving figures in BENCHMARKS.md.

    .venv/bin/python bench/serve_cpu.py                                  # 32 clients, default
    .venv/bin/python bench/serve_cpu.py --set serve.ingress=haproxy
    .venv/bin/python bench/serve_cpu.py --clients 8 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serve_load  # noqa: E402


def cpu_seconds() -> dict[int, tuple[float, str]]:
    """user + system CPU seconds and a short command line of every process we may read."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["cmdline", "name"]):
        try:
            times = proc.cpu_times()
            name = " ".join(proc.info["cmdline"] or [proc.info["name"]])
            out[proc.pid] = (times.user + times.system, name[:90])
        except psutil.Error:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0, help="measured window")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    load_args = serve_load.parse_args([f"--set={o}" for o in args.overrides])
    workdir = Path(tempfile.mkdtemp(prefix="serve-cpu-"))
    checkpoint = serve_load.make_checkpoint("minilm", workdir / "model", random_weights=False)
    texts = serve_load.review_texts()
    from serving import deploy
    from serving.sizing import replica_count

    os.environ["SFTUNE_STATE_DIR"] = str(workdir / "state")
    cfg = serve_load._serve_config(load_args)
    url = deploy.start_background(checkpoint, cfg)
    try:
        replicas = replica_count(cfg)
        serve_load.run_load(url, texts, args.clients, 3.0, 3.0, replicas)  # warm-up
        before, start = cpu_seconds(), time.perf_counter()
        row = serve_load.run_load(url, texts, args.clients, 0.0, args.seconds, replicas)
        after, wall = cpu_seconds(), time.perf_counter() - start
    finally:
        deploy.stop(cfg)
    report(row, before, after, wall, args)
    return 0


def report(row: dict, before: dict, after: dict, wall: float, args) -> None:
    requests = row["req_per_s"] * args.seconds
    print(f"{args.clients} clients, {' '.join(args.overrides) or 'defaults'}: "
          f"{row['req_per_s']:.1f} req/s, p99 {row['p99_ms']:.0f} ms, "
          f"mean batch {row['mean_batch']:.1f}, errors {row['errors']}")
    deltas = sorted(((after[p][0] - before[p][0], after[p][1]) for p in after if p in before),
                    reverse=True)
    print(f"{'cores':>6} {'CPU ms/req':>11}  process")
    for seconds, name in deltas[:8]:
        print(f"{seconds / wall:6.2f} {seconds * 1000 / requests:11.2f}  {name}")
    print(f"{sum(d for d, _ in deltas) / wall:6.2f} {'':>11}  all processes (of "
          f"{os.cpu_count()} cores)")


if __name__ == "__main__":
    sys.exit(main())
