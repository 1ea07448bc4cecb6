"""Why a GPU replica can be slow on fresh input shapes: forward time per (batch, width) shape.

A server sees a new (texts, padded width) pair with almost every merged batch. Some attention
kernels (cuDNN's scaled-dot-product attention) build a plan per new shape, which costs far more
than the forward itself. This times random serving-like shapes twice (first sight, then again)
under each attention setting, each in a fresh process so no setting inherits another's caches,
plus the whole ``Predictor.predict`` call (tokenize, bucketed forward, probabilities) at 32 texts:

    python bench/gpu_shapes.py                  # on a CUDA machine with sftune installed
    python bench/gpu_shapes.py --shapes 60      # fewer shapes, quicker

Writes bench/results/gpu_shapes.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = ["default", "no_cudnn_sdpa", "buckets"]


def _shapes(count: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(1, 32), rng.randint(8, 200)) for _ in range(count)]


def _time_pass(model, shapes, setting: str) -> list[float]:
    import torch

    from serving.predictor import padded_shape

    times = []
    for batch, width in shapes:
        if setting == "buckets":
            batch, width = padded_shape(batch, width)
        ids = torch.randint(1000, 2000, (batch, width), device="cuda")
        mask = torch.ones_like(ids)
        mask[0, width // 2:] = 0  # a padded row, as in any real batch
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _predict_ms(checkpoint: str) -> float:
    from bench.serve_load import review_texts
    from serving.predictor import Predictor

    predictor = Predictor.load(Path(checkpoint), device="cuda")
    texts = review_texts(2048)
    for i in range(0, 2048, 32):  # first sight of every shape
        predictor.predict(texts[i:i + 32])
    start = time.perf_counter()
    for i in range(0, 2048, 32):
        predictor.predict(texts[i:i + 32])
    return (time.perf_counter() - start) * 1000 / 64


def run_setting(setting: str, checkpoint: str, count: int) -> dict:
    import statistics

    import torch
    from transformers import AutoModelForSequenceClassification

    if setting == "no_cudnn_sdpa":
        torch.backends.cuda.enable_cudnn_sdp(False)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, use_safetensors=True)
    model = model.eval().to(device="cuda", dtype=torch.bfloat16)
    _time_pass(model, [(4, 16)], setting)  # CUDA context and kernels load
    shapes = _shapes(count)
    first, again = _time_pass(model, shapes, setting), _time_pass(model, shapes, setting)
    row = {"setting": setting, "shapes": count,
           "first_sight_mean_ms": statistics.mean(first),
           "first_sight_median_ms": statistics.median(first),
           "repeat_mean_ms": statistics.mean(again), "repeat_median_ms": statistics.median(again)}
    if setting == "buckets":  # what serving.predictor does on a GPU: time its whole call too
        row["predict_32_texts_ms"] = _predict_ms(checkpoint)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=int, default=120)
    parser.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        print(json.dumps(run_setting(args.setting, args.checkpoint, args.shapes)))
        return 0
    import tempfile

    from bench.common import print_table, write_json
    from bench.serve_load import make_checkpoint

    checkpoint = make_checkpoint("minilm", Path(tempfile.mkdtemp()) / "ckpt", random_weights=True)
    rows = []
    for setting in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--setting", setting, "--checkpoint",
                              str(checkpoint), "--shapes", str(args.shapes)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print_table(rows, list(rows[-1]))
    write_json("gpu_shapes", {"command": " ".join(["python bench/gpu_shapes.py", *sys.argv[1:]]),
                              "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
