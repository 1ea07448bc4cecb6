"""Training throughput: the sftune Trainer vs a minimal hand-written loop vs HF `Trainer`.

Same model (the packaged MiniLM), same training examples, batch 32, max_length 64, task loss only
(the LM term is switched off: neither baseline has it), frozen depth 0, 3 and 6. Each variant runs
in its own process so its peak RSS is its own. Target: sftune >= 0.95x the hand loop, and faster
than HF Trainer.

    .venv/bin/python bench/trainer_throughput.py            # about 4 min on 2 quiet CPU cores
    .venv/bin/python bench/trainer_throughput.py --examples 320 --depths 0 6   # quicker
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import gpu_peak_mib, peak_rss_mib, print_table, write_json  # noqa: E402

LR, BATCH, MAX_LEN, DROPOUT = 5e-5, 32, 64, 0.1


def _config(examples: int, depth: int, device: str):
    from search.config import load_config

    return load_config(None, [
        "model.name=minilm", "data.source=rotten_tomatoes", f"data.max_length={MAX_LEN}",
        f"data.max_train_examples={examples}", "data.max_eval_examples=64",
        "train.epochs=1", f"train.batch_size={BATCH}", "train.prefix_cache=off",
        f"train.device={device}", f"space.lr={LR}", f"space.frozen_depth={depth}",
        f"space.dropout={DROPOUT}", "space.weight_decay=0.01", "space.joint_epochs=0",
        "space.alpha=1",
    ])


def _prepared(examples: int, depth: int, device: str):
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir

    cfg = _config(examples, depth, device)
    model_dir = resolve_model_dir("minilm")
    return cfg, model_dir, prepare_data(cfg.data, load_tokenizer(model_dir))


def run_sftune(examples: int, depth: int, device: str) -> dict:
    import tempfile

    from search.train import Trainer

    cfg, model_dir, data = _prepared(examples, depth, device)
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=data, model_dir=model_dir,
                      workdir=Path(tempfile.mkdtemp()))
    metrics = trainer._train_epoch(1)
    return {"tokens": int(data.train.lengths.sum()), "seconds": metrics["train_time_s"]}


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def run_hand_loop(examples: int, depth: int, device: str) -> dict:
    """What an engineer writes by hand: pad per batch, forward, CE, AdamW, clip, schedule."""
    import numpy as np
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from transformers import AutoModelForSequenceClassification

    cfg, model_dir, data = _prepared(examples, depth, device)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=2, hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=DROPOUT, use_safetensors=True).to(device)
    frozen = [model.bert.embeddings, *model.bert.encoder.layer[:depth]] if depth else []
    for module in frozen:
        module.requires_grad_(False)
    model.train()
    for module in frozen:
        module.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    steps = -(-len(data.train) // BATCH)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    examples_ids = [torch.from_numpy(data.train.example(i).astype(np.int64))
                    for i in range(len(data.train))]
    labels = torch.from_numpy(data.train.labels)
    order = np.random.default_rng(0).permutation(len(examples_ids))
    start = time.perf_counter()
    for first in range(0, len(order), BATCH):
        idx = order[first:first + BATCH]
        ids = pad_sequence([examples_ids[i] for i in idx], batch_first=True,
                           padding_value=data.pad_id).to(device)
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids, attention_mask=(ids != data.pad_id).long()).logits,
            labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return {"tokens": int(data.train.lengths.sum()), "seconds": time.perf_counter() - start}


def run_hf_trainer(examples: int, depth: int, device: str) -> dict:
    import tempfile

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from search.model import load_tokenizer

    cfg, model_dir, data = _prepared(examples, depth, device)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=2, hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=DROPOUT, use_safetensors=True)
    for module in ([model.bert.embeddings, *model.bert.encoder.layer[:depth]] if depth else []):
        module.requires_grad_(False)
    rows = [{"input_ids": data.train.example(i).tolist(), "labels": int(data.train.labels[i])}
            for i in range(len(data.train))]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
        learning_rate=LR, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
        report_to=[], save_strategy="no", logging_strategy="no", dataloader_num_workers=0,
        use_cpu=device == "cpu", bf16=False, seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorWithPadding(load_tokenizer(model_dir)))
    out = trainer.train()
    return {"tokens": int(data.train.lengths.sum()), "seconds": out.metrics["train_runtime"]}


RUNNERS = {"hand": run_hand_loop, "sftune": run_sftune, "hf_trainer": run_hf_trainer}


def _child(name: str, examples: int, depth: int, device: str, queue) -> None:
    _quiet()
    result = RUNNERS[name](examples, depth, device)
    result.update(peak_rss_mib=peak_rss_mib(), gpu_peak_mib=gpu_peak_mib())
    queue.put(result)


def measure(name: str, examples: int, depth: int, device: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, examples, depth, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=640, help="training examples (1 epoch)")
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 3, 6])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    rows = []
    for depth in args.depths:
        results = {name: measure(name, args.examples, depth, args.device) for name in RUNNERS}
        hand = results["hand"]["tokens_per_s"]
        rows.append({
            "frozen_depth": depth,
            "sftune/hand": results["sftune"]["tokens_per_s"] / hand,
            "sftune/hf": results["sftune"]["tokens_per_s"] / results["hf_trainer"]["tokens_per_s"],
            **{f"{n}_tok_s": r["tokens_per_s"] for n, r in results.items()},
            **{f"{n}_rss_mib": r["peak_rss_mib"] for n, r in results.items()},
            "raw": results,
        })
        print_table(rows[-1:], [c for c in rows[-1] if c != "raw"])
    print("\nsummary (ratios first; tokens/s = real tokens of the training examples / train time)")
    print_table(rows, [c for c in rows[0] if c != "raw"])
    write_json("trainer_throughput", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
