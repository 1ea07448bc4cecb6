"""Benchmark: the frozen-prefix cache against the full forward pass, side by side in one run.

Runs sftune's own Trainer (no Ray) on the default MiniLM and the built-in rotten-tomatoes subset:

1. single trials at k = 0, 2, 4, 6 with the cache on (``train.prefix_cache=auto``, what a sweep
   uses) and off, epoch 1 and later epochs timed separately, next to the FLOP-predicted speed-up;
2. one trial with a joint (masked-LM) first epoch, whose LM term always runs the full stack;
3. a "whole sweep" of fixed configs (same seeds, k spread over 0..6) run one after another with
   the cache on (shared directory, as in a sweep) and off: wall time and best accuracy.

The two arms alternate, off then on, so drift on a shared machine hits both alike. Epoch times are
train + validation time; the cached arm's epoch 1 includes building the cache. Checkpoint saving
(the same in both arms) is left out of epoch times but is inside the sweep's wall time.

    .venv/bin/python bench/prefix_cache.py              # figures for BENCHMARKS.md
    .venv/bin/python bench/prefix_cache.py --smoke      # seconds: a wiring check
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.batching import length_grouped_order  # noqa: E402
from search.config import AppConfig, load_config  # noqa: E402
from search.data import PreparedData, prepare_data  # noqa: E402
from search.model import load_tokenizer, resolve_model_dir  # noqa: E402
from search.train import Trainer  # noqa: E402

__all__ = ["main"]

#: The sweep's fixed points: k spread over 0..6 (k=4 twice, so one trial maps a shared file).
SWEEP_POINTS = [(0, 8e-5), (1, 1e-4), (2, 6e-5), (3, 1.2e-4), (4, 8e-5), (5, 1.5e-4),
                (6, 3e-4), (4, 1.5e-4)]
TOLERANCE = 0.15  # measured speed-up must be within 15% of the FLOP prediction


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--train-examples", type=int, default=512)
    p.add_argument("--eval-examples", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3, help="epochs of each single trial")
    p.add_argument("--depths", default="0,2,4,6", help="frozen depths of the single trials")
    p.add_argument("--joint-depth", type=int, default=4, help="k of the joint-epoch case")
    p.add_argument("--sweep-trials", type=int, default=8, help="0 skips the sweep")
    p.add_argument("--skip-single", action="store_true", help="only the sweep")
    p.add_argument("--sweep-epochs", type=int, default=2)
    p.add_argument("--sweep-joint-epochs", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of each single trial per arm; each epoch's fastest is kept")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "prefix_cache.json"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the wiring only")
    p.add_argument("--verbose", action="store_true", help="show sftune's prefix-cache log lines")
    args = p.parse_args(argv)
    if args.smoke:
        args.train_examples, args.eval_examples, args.epochs = 64, 32, 2
        args.depths, args.sweep_trials, args.sweep_epochs = "0,6", 2, 1
    return args


def _config(args, *, k: int, cache: bool, epochs: int, joint: int, lr: float = 8e-5,
            device: str = "auto") -> AppConfig:
    overrides = [
        f"data.max_train_examples={args.train_examples}",
        f"data.max_eval_examples={args.eval_examples}",
        f"train.epochs={epochs}", f"train.patience={epochs + 1}", f"train.device={device}",
        f"train.prefix_cache={'auto' if cache else chr(39) + 'off' + chr(39)}",
        f"space.frozen_depth={k}", f"space.joint_epochs={joint}", f"space.lr={lr}",
        "space.alpha=30", "space.dropout=0.1", "space.weight_decay=0.01",
    ]
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    return load_config(args.config, overrides)


class _PeakRSS:
    """Samples this process's resident set every 20 ms; ``peak_mb`` is the largest seen."""

    def __enter__(self) -> _PeakRSS:
        self.peak_mb, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Clock:
    """Wall and CPU seconds of each call of a wrapped function.

    CPU time (this process, all threads) is the noise-robust twin of wall time: on a shared
    machine other jobs stretch wall time, but not the CPU seconds a trial itself burns.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def wrap(self, fn):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn(*args, **kwargs)
            self.calls.append((time.perf_counter() - wall, time.process_time() - cpu))
            return out

        return timed


def _run_trial(cfg: AppConfig, data: PreparedData, workdir: Path,
               cache_dir: Path | None = None) -> dict[str, Any]:
    """One trial through the Trainer; epoch i's time is its training plus its validation.

    Epoch 1 also holds the trial's setup (model load, and in the cached arm the cache build).
    """
    setup, train, val = _Clock(), _Clock(), _Clock()
    with _PeakRSS() as rss:
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer = setup.wrap(Trainer)(
            cfg=cfg, params=cfg.default_params(), data=data,
            model_dir=resolve_model_dir(cfg.model.name), workdir=workdir, cache_dir=cache_dir)
        # Instance attributes shadow the methods fit() calls, so the timing is per epoch.
        trainer._train_epoch = train.wrap(trainer._train_epoch)
        trainer.evaluate = val.wrap(trainer.evaluate)
        result = trainer.fit()
        wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    epochs = np.add(train.calls, val.calls)
    epochs[0] += setup.calls[0]
    cache = trainer.prefix_cache
    out = {
        "k": cfg.default_params().frozen_depth, "cached": cache is not None,
        "cache_source": cache.source if cache is not None else None,
        "cache_mb": cache.nbytes / 2**20 if cache is not None else 0.0,
        "build_s": cache.build_seconds if cache is not None else 0.0,
        "setup_s": setup.calls[0][0], "wall_s": wall_s, "cpu_s": cpu_s,
        "epoch_s": epochs[:, 0].tolist(), "epoch_cpu_s": epochs[:, 1].tolist(),
        "val_accuracy": [h["val_accuracy"] for h in result.history],
        "train_task_loss": [h["train_task_loss"] for h in result.history],
        "best_val_accuracy": result.best["val_accuracy"], "peak_rss_mb": rss.peak_mb,
        "load_avg": os.getloadavg()[0],
    }
    del trainer, result, cache
    gc.collect()
    return out


# --- FLOP model -----------------------------------------------------------------------------


def _batch_shapes(lengths: np.ndarray, order: np.ndarray, size: int) -> list[tuple[int, int]]:
    """(examples, padded length) of each batch when ``order`` is cut into ``size`` chunks."""
    return [(len(c), int(lengths[c].max())) for c in
            (order[i : i + size] for i in range(0, len(order), size))]


def _layer_flops(shapes, hidden: int, inter: int) -> float:
    """Forward FLOPs of one encoder layer over batches: projections + FFN + attention."""
    return float(sum(2 * b * t * (4 * hidden**2 + 2 * hidden * inter) + 4 * b * t * t * hidden
                     for b, t in shapes))


def _epoch_flops(*, k: int, n: int, cached: bool, train: float, val: float, build: float,
                 head: float, lm: float) -> float:
    """One epoch's FLOPs: ``train``/``val``/``build`` are one layer's forward FLOPs.

    Training runs the forward of every layer it touches and a backward (2x forward) of the N-k
    trainable layers only: frozen layers never needed a backward. Cached, only layers k..N-1 run,
    and the epoch that builds the cache pays ``build`` (k layers, once, train and validation).
    """
    run = n - k if cached else n
    flops = train * (run + 2 * (n - k)) + val * run + head + lm
    return flops + (build * k if cached else 0.0)


def _trial_flops(data: PreparedData, model_cfg, cfg: AppConfig,
                 builds: bool = True) -> list[tuple[float, float]]:
    """(uncached, cached) FLOPs of each epoch of one trial; ``builds``: epoch 1 pays the cache."""
    params = cfg.default_params()
    k, joint, epochs = params.frozen_depth, params.joint_epochs, cfg.train.epochs
    h, inter, n = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers
    tr_len, va_len = data.train.lengths, data.validation.lengths
    rng = np.random.default_rng(cfg.train.seed)  # the Trainer's shuffling, replayed

    def shuffled() -> np.ndarray:
        if cfg.train.group_by_length:
            return length_grouped_order(tr_len, params.batch_size, rng)
        return rng.permutation(len(tr_len))

    train = [_layer_flops(_batch_shapes(tr_len, shuffled(), params.batch_size), h, inter)
             for _ in range(epochs)]
    eval_batch = cfg.train.eval_batch_size
    sort = lambda lens: np.argsort(lens, kind="stable")  # noqa: E731
    val = _layer_flops(_batch_shapes(va_len, sort(va_len), eval_batch), h, inter)
    build = val + _layer_flops(_batch_shapes(tr_len, sort(tr_len), eval_batch), h, inter)
    head = 3 * 2 * (len(tr_len) + len(va_len)) * (h * h + 2 * h)  # pooler + classifier
    masked = 0.15 * float(np.sum(tr_len - 2))  # MLM head over the masked tokens, fwd + bwd
    mlm_head = 2 * masked * (h * h + h * model_cfg.vocab_size) * 3
    out = []
    for e in range(epochs):
        lm = (train[e] * (n + 2 * (n - k)) + mlm_head) if e < joint else 0.0
        kw = dict(k=k, n=n, train=train[e], val=val, head=head, lm=lm)
        built = build if (e == 0 and builds) else 0.0
        out.append((_epoch_flops(cached=False, build=0.0, **kw),
                    _epoch_flops(cached=k > 0, build=built, **kw)))
    return out


def _ratios(flops: list[tuple[float, float]]) -> dict[str, float]:
    off, on = np.array(flops).T
    later = float(off[1:].sum() / on[1:].sum()) if len(off) > 1 else float("nan")
    return {"epoch1": float(off[0] / on[0]), "later": later}


# --- the three sections -------------------------------------------------------------------------


def _pair(args, data: PreparedData, *, k: int, epochs: int, joint: int) -> dict[str, Any]:
    """The same single trial with the cache off, then on; speed-ups measured and predicted."""
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(args.repeats):
        for cached in (False, True):
            cfg = _config(args, k=k, cache=cached, epochs=epochs, joint=joint)
            with tempfile.TemporaryDirectory() as tmp:
                runs[cached].append(_run_trial(cfg, data, Path(tmp)))
    off, on = _fastest(runs[False]), _fastest(runs[True])
    model_cfg = _model_config(cfg)
    predicted = _ratios(_trial_flops(data, model_cfg, cfg))
    measured = _ratios(list(zip(off["epoch_s"], on["epoch_s"], strict=True)))
    measured_cpu = _ratios(list(zip(off["epoch_cpu_s"], on["epoch_cpu_s"], strict=True)))
    return {"k": k, "joint_epochs": joint, "off": off, "on": on, "measured": measured,
            "measured_cpu": measured_cpu,
            "predicted": predicted, "n_layers": model_cfg.num_hidden_layers,
            "same_accuracy": off["val_accuracy"] == on["val_accuracy"],
            "max_loss_gap": float(np.max(np.abs(np.subtract(off["train_task_loss"],
                                                            on["train_task_loss"]))))}


def _fastest(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run, with each epoch's time the fastest of the repeats (load spikes only slow)."""
    fastest = dict(repeats[0], repeats=[r["epoch_s"] for r in repeats],
                   repeats_cpu=[r["epoch_cpu_s"] for r in repeats])
    fastest["epoch_s"] = [float(min(t)) for t in zip(*fastest["repeats"], strict=True)]
    fastest["epoch_cpu_s"] = [float(min(t)) for t in zip(*fastest["repeats_cpu"], strict=True)]
    return fastest


def _model_config(cfg: AppConfig):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(resolve_model_dir(cfg.model.name)),
                                      local_files_only=True)


def _verdict(row: dict[str, Any], measured: str = "measured") -> str:
    """The issue's target for this row: k=0 no slowdown, k=N >= 10x later, else within 15%."""
    k, n, got, want = row["k"], row["n_layers"], row[measured], row["predicted"]
    if k == 0:
        return "ok" if min(got.values()) >= 0.95 else "slower"
    if k == n and row["joint_epochs"] == 0:
        return "ok" if got["later"] >= 10 else "<10x"
    checks = [abs(got[e] / want[e] - 1) <= TOLERANCE for e in ("epoch1", "later")
              if np.isfinite(want[e])]
    return "ok" if all(checks) else "off >15%"


def _sweep(args, data: PreparedData) -> dict[str, Any]:
    """Fixed configs run one after another; the cached arm shares one cache directory.

    The arms alternate trial by trial (off i, on i) so drift hits both; each arm's wall time is
    the sum of its trials' wall times, build, checkpoints and all.
    """
    arms: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    flops = np.zeros(2)  # predicted (uncached, cached) FLOPs of the whole sweep
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "prefix_cache"
        for i, (k, lr) in enumerate(SWEEP_POINTS[: args.sweep_trials]):
            for cached in (False, True):
                cfg = _config(args, k=k, cache=cached, epochs=args.sweep_epochs,
                              joint=args.sweep_joint_epochs, lr=lr)
                workdir = Path(tmp) / f"{'on' if cached else 'off'}-{i}"
                arms[cached].append(_run_trial(cfg, data, workdir,
                                               cache_dir if cached else None))
            builds = arms[True][-1]["cache_source"] != "mapped"  # a shared file costs nothing
            flops += np.sum(_trial_flops(data, _model_config(cfg), cfg, builds), axis=0)
        cache_files = sorted(p.name for p in cache_dir.glob("*.npy"))
    summary = {}
    for cached, trials in arms.items():
        summary["on" if cached else "off"] = {
            "wall_s": sum(t["wall_s"] for t in trials), "cpu_s": sum(t["cpu_s"] for t in trials),
            "best_val_accuracy": max(t["best_val_accuracy"] for t in trials),
            "trial_best": [t["best_val_accuracy"] for t in trials],
            "peak_rss_mb": max(t["peak_rss_mb"] for t in trials), "trials": trials,
        }
    off, on = summary["off"], summary["on"]
    summary.update(speedup=off["wall_s"] / on["wall_s"], speedup_cpu=off["cpu_s"] / on["cpu_s"],
                   predicted=flops[0] / flops[1],
                   cache_files=len(cache_files), identical=off["trial_best"] == on["trial_best"])
    return summary


def _machine() -> dict[str, Any]:
    import transformers

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "?")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "gpu": gpu, "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "numpy": np.__version__, "load_avg_start": os.getloadavg(),
    }


# --- report -------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pair_rows(pairs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for p in pairs:
        got, cpu, want = p["measured"], p["measured_cpu"], p["predicted"]
        off, on = p["off"], p["on"]
        k = f"{p['k']}" + (f" (joint {p['joint_epochs']})" if p["joint_epochs"] else "")
        rows.append([
            k, f"{got['later']:.2f}x / {cpu['later']:.2f}x", f"{want['later']:.2f}x",
            f"{got['epoch1']:.2f}x / {cpu['epoch1']:.2f}x", f"{want['epoch1']:.2f}x",
            f"{_verdict(p)} / {_verdict(p, 'measured_cpu')}",
            f"{off['epoch_s'][0]:.1f} / {np.mean(off['epoch_s'][1:]):.2f}",
            f"{on['epoch_s'][0]:.1f} / {np.mean(on['epoch_s'][1:]):.2f}",
            f"{on['build_s']:.1f}", f"{on['cache_mb']:.1f}",
            "yes" if p["same_accuracy"] else "NO", f"{p['max_loss_gap']:.1e}",
            f"{off['peak_rss_mb']:.0f} / {on['peak_rss_mb']:.0f}",
        ])
    return rows


PAIR_HEADERS = ["k", "later: wall / CPU", "later: FLOP pred.", "epoch 1: wall / CPU",
                "epoch 1: FLOP pred.", "target: wall / CPU", "off s (ep 1 / later)",
                "on s (ep 1 / later)",
                "build s", "cache MiB", "same val acc", "max loss gap", "peak RSS MiB off / on"]


def _sweep_table(sweep: dict[str, Any]) -> str:
    off, on = sweep["off"], sweep["on"]
    headers = ["speed-up: wall / CPU", "FLOP pred.", "wall off s", "wall on s", "best val acc off",
               "best val acc on", "per-trial best identical", "cache files",
               "peak RSS MiB off / on"]
    row = [f"{sweep['speedup']:.2f}x / {sweep['speedup_cpu']:.2f}x", f"{sweep['predicted']:.2f}x",
           f"{off['wall_s']:.0f}",
           f"{on['wall_s']:.0f}", f"{off['best_val_accuracy']:.4f}",
           f"{on['best_val_accuracy']:.4f}", "yes" if sweep["identical"] else "NO",
           str(sweep["cache_files"]), f"{off['peak_rss_mb']:.0f} / {on['peak_rss_mb']:.0f}"]
    title = (f"Whole sweep: {len(off['trials'])} fixed configs (k = "
             f"{', '.join(str(t['k']) for t in off['trials'])}), run one after another")
    return title + "\n" + _table(headers, [row])


def _report(result: dict[str, Any]) -> str:
    parts = []
    if result["single"] or result["joint"]:
        parts += ["Single trials (speed-up = time off / time on; epoch time = train + validation)",
                  _table(PAIR_HEADERS, _pair_rows(result["single"] + result["joint"]))]
    if result.get("sweep"):
        parts += ["", _sweep_table(result["sweep"])]
    m = result["machine"]
    parts += ["", f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
              f"threads), transformers {m['transformers']}, GPU {m['gpu']}; load average "
              f"{m['load_avg_start'][0]:.2f} at start, {m['load_avg_end'][0]:.2f} at end; "
              f"peak RSS of the process {result['peak_rss_mb']:.0f} MiB; {result['total_s']:.0f} s"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    started, machine = time.perf_counter(), _machine()
    cfg = _config(args, k=0, cache=False, epochs=args.epochs, joint=0)
    data = prepare_data(cfg.data, load_tokenizer(resolve_model_dir(cfg.model.name)))
    depths = [] if args.skip_single else [int(d) for d in args.depths.split(",")]
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args),
        "data_sizes": data.sizes, "machine": machine,
        "single": [_pair(args, data, k=k, epochs=args.epochs, joint=0) for k in depths],
        "joint": [] if args.skip_single else [_pair(args, data, k=args.joint_depth, epochs=2,
                                                    joint=1)],
    }
    if args.sweep_trials:
        result["sweep"] = _sweep(args, data)
    machine["load_avg_end"] = os.getloadavg()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["total_s"] = time.perf_counter() - started
    text = _report(result)
    print(text)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text(f"`{result['command']}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
