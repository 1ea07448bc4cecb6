"""`sftune`: the command line. The one room above everything; heavy imports stay inside commands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from search.config import BUILTIN_CONFIGS, AppConfig, ConfigError, load_config
from search.results import StopReason

__all__ = ["build_parser", "main", "register"]

#: The packages' command modules, in the order `sftune --help` lists their commands.
COMMAND_MODULES = ("search.cli", "serving.cli", "dashboard.cli")

EPILOG = """examples:
  sftune sweep --config configs/default.yaml --name demo
  sftune results demo
  sftune list --storage s3://my-bucket/sweeps
  sftune best demo --export ./best-model
  sftune train --config configs/smoke.yaml
  sftune train --set space.frozen_depth=3 --set train.epochs=1
  sftune assets install
"""


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.epochs=3 (repeatable)",
    )


def _config(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config, args.overrides)


def _print_history(history: list[dict]) -> None:
    import pandas as pd

    if not history:
        print("no evaluation finished")
        return
    columns = ["epoch", "examples", "stage", "lr", "train_task_loss", "train_lm_loss", "val_loss",
               "val_accuracy", "val_f1_macro", "tokens_per_s", "train_time_s"]
    frame = pd.DataFrame(history)[columns]
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def cmd_train(args: argparse.Namespace) -> int:
    """Run one trial at the config's default point, with no Ray."""
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir
    from search.train import Trainer

    cfg = _config(args)
    params = cfg.default_params()
    output = args.output or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    model_dir = resolve_model_dir(cfg.model.name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))
    print(f"params: {params.model_dump()}")
    print(f"data: {data.sizes} labels={data.label_names} fingerprint={data.fingerprint}")
    print(f"max_length {data.max_length} ({data.truncation} truncation): "
          f"{100 * data.truncated_share:.1f}% of training texts cut")
    trainer = Trainer(cfg=cfg, params=params, data=data, model_dir=model_dir,
                      workdir=output.resolve(), progress=not args.quiet)
    result = trainer.fit()
    _print_history(result.history)
    (output / "history.json").write_text(json.dumps(result.history, indent=2))
    if result.stop_reason == StopReason.DIVERGED:
        print(f"trial {result.message}", file=sys.stderr)
        return 1
    best = result.best
    print(f"best evaluation at epoch {best['epoch']:.2f}: "
          f"{cfg.train.metric}={best[cfg.train.metric]:.4f} ({result.stop_reason})")
    print(f"checkpoint: {result.checkpoint_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) a sweep, then evaluate and export its best trial."""
    from search import api

    cfg = _config(args)
    if args.warm_start:
        if args.resume:
            raise ConfigError("--warm-start starts a new sweep; a resumed one keeps its own")
        cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(
            update={"warm_start": args.warm_start})})
    result = api.sweep(cfg, name=args.resume or args.name, address=args.address,
                       resume=bool(args.resume), export=not args.no_export)
    _print_results(result.path, top=5)
    if result.best is None:
        return 0
    _print_outcome(result.best, cfg)
    print(f"exported: {result.best['export_dir']}")
    print(f"next: sftune serve {result.name}    |    sftune dashboard")
    return 0


def _print_outcome(best: dict, cfg: AppConfig) -> None:
    """The exported model's test metrics and what the tuning bought over the untuned default."""
    what = "final trial (best configuration, all training data)" if best["phase"] == "final" \
        else "best trial"
    metric = cfg.train.metric.removeprefix("val_")
    print(f"{what} {best['trial_id']}: validation {metric}={best['score']:.4f}, "
          f"test accuracy={best['test_accuracy']:.4f}, test macro-F1={best['test_f1_macro']:.4f}")
    if best.get("lexical_weight"):
        print(f"  with its lexical layer (TF-IDF + linear SVM, the words' share "
              f"{best['lexical_weight']:g} of 0-1, chosen on validation); the transformer "
              f"alone: test "
              f"accuracy={best['test_accuracy_model_only']:.4f}, macro-F1="
              f"{best['test_f1_macro_model_only']:.4f}")
    if best.get("tuning_gain"):
        from search.results import describe_gain

        print(describe_gain(best["tuning_gain"]))
    _print_per_class(best.get("test_per_class"))


def _print_per_class(record: dict | None) -> None:
    """The test split's precision, recall and F1 per label: where the model fails."""
    from search.metrics import per_class_table

    table = per_class_table(record)
    if table is not None:
        print("test, per class:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))


def _print_results(path: str, top: int) -> None:
    from search import storage
    from search.results import (
        describe_lineage,
        range_edges,
        read_sweep_meta,
        read_trials,
        summarize_trials,
        widen_command,
    )

    meta = read_sweep_meta(path)
    frame = read_trials(path)
    summary = summarize_trials(frame)
    columns = ["trial_id", "phase", "status", "stop_reason", "score", "best_epoch", "epochs",
               "alpha", "lr", "frozen_depth", "weight_decay", "dropout", "joint_epochs",
               "val_f1_macro"]
    if summary["warm_from"].notna().any():  # trials an earlier sweep lent (warm start)
        columns.append("warm_from")
    print(f"sweep {meta['name']}: {meta['status']}, {len(summary)} trials "
          f"({(summary['status'] == 'ERROR').sum()} errored), metric {meta['metric']}")
    for line in describe_lineage(meta):
        print(line)
    if not summary.empty:
        print(summary[columns].head(top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    _print_finalists(meta, frame)
    _print_failures(summary)
    edges = range_edges(meta, summary)  # the optimum may lie past a searched bound
    for edge in edges:
        print(f"edge of range: {edge['message']}")
    if edges:
        print(f"  widen cheaply (these trials are not run again): {widen_command(meta, edges)}")
    kept = summary["checkpoint"].map(lambda c: isinstance(c, str)).sum()
    print(f"disk: {storage.total_size(path) / 2**20:.1f} MiB under {path} ({kept} trial "
          "checkpoints kept)")


def _print_finalists(meta: dict, frame) -> None:
    """The finalists re-run with more seeds: mean ± sd over their runs, and which reproduced."""
    from search.results import sweep_finalists

    table = sweep_finalists(meta, frame)
    if table.empty:
        return
    rule = ((meta.get("config") or {}).get("tune") or {}).get("finalist_choice", "mean")
    print(f"finalists (ranked by {rule} over the search run and the new seeds):")
    for _, f in table.iterrows():
        flag = "" if f["reproducible"] else "  NOT REPRODUCIBLE: its new seeds fell short"
        scores = ", ".join(f"{s:.4f}" for s in f["scores"])
        print(f"  {f['trial_id']}{' (default)' if f['default_point'] else ''}: "
              f"{f['mean']:.4f} ± {f['sd']:.4f} (search {f['search_score']:.4f}; seeds "
              f"{', '.join(map(str, f['seeds']))}: {scores}){flag}")


def _print_failures(summary) -> None:
    """Why trials failed, by kind, each with its error (the exception, then where it was)."""
    failed = summary[summary["failure"].notna()] if "failure" in summary else summary.iloc[:0]
    if failed.empty:
        return
    counts = failed["failure"].value_counts()
    print("failed trials: " + ", ".join(f"{n} {kind.replace('_', ' ')}"
                                        for kind, n in counts.items()))
    for _, row in failed.iterrows():
        lines = str(row["error"] or "").splitlines() or [""]
        print(f"  {row['trial_id']} [{row['failure'].replace('_', ' ')}] {lines[0]}")
        for line in lines[1:]:
            print(f"      {line}")


def _add_storage_args(parser: argparse.ArgumentParser) -> None:
    """--storage and --config, taken the same way by every command that reads sweeps."""
    parser.add_argument("--storage", help="where the sweeps are: a directory or a bucket URI "
                        "(default: the config's tune.storage_path)")
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")


def _storage_config(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config, [f"tune.storage_path={args.storage}"] if args.storage else [])


def _experiment_dir(args: argparse.Namespace) -> str:
    """The sweep NAME under --storage (a directory or a bucket URI)."""
    from search import storage
    from search.results import experiment_path

    cfg = _storage_config(args)
    path = experiment_path(cfg, args.name)
    if not storage.is_dir(path):
        where = storage.root(cfg.tune.storage_path)
        raise FileNotFoundError(f"no sweep named {args.name!r} under {where}")
    return path


def cmd_results(args: argparse.Namespace) -> int:
    if args.json:
        from search.results import results_record

        print(json.dumps(results_record(_experiment_dir(args)), indent=2, default=str))
        return 0
    _print_results(_experiment_dir(args), top=args.top)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """The sweeps under a storage path, newest first: status, trials, best score and test."""
    import pandas as pd

    from search import api, storage

    cfg = _storage_config(args)
    rows = api.list_sweeps(cfg.tune.storage_path)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif not rows:
        print(f"no sweeps under {storage.root(cfg.tune.storage_path)}")
    else:
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from search import api

    best = api.best(_experiment_dir(args), args.export, trial=args.trial)
    print(json.dumps(best, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Sweep, export, serve and open the dashboard: the whole product in one command."""
    from dashboard.cli import run_dashboard, settings_for
    from search import api
    from serving.deploy import start_background, stop

    cfg = _config(args)
    best = api.sweep(cfg, name=args.name or time.strftime("demo-%Y%m%d-%H%M%S")).best
    _print_outcome(best, cfg)
    print(f"exported to {best['export_dir']}")
    url = start_background(best["export_dir"], cfg.serve)
    print(f"serving:   {url}/predict   (docs: {url}/docs); the model's test accuracy is "
          f"{best['test_accuracy']:.3f} on {int(best['test_examples']):,} held-out reviews")
    try:  # prints its URL and runs until Ctrl-C
        return run_dashboard(settings_for(cfg, serve_url=url), host=cfg.dashboard.host,
                             port=cfg.dashboard.port)
    finally:
        stop(cfg.serve)


def cmd_retune(args: argparse.Namespace) -> int:
    """Warm-start a sweep on new data from NAME, compare its model with the served one on rows
    neither saw, and promote it to the running endpoint only if it wins by the margin."""
    from search.results import update_sweep_meta
    from search.retune import held_out_share, retune, retune_config

    cfg, old_path = retune_config(args.name, args.overrides, args.storage)
    served_dir, url = _served_model(cfg, args.served)
    print(f"served model: {served_dir}" + (f" (endpoint {url})" if url else " (no endpoint)"))
    result, record = retune(cfg, old_path, served_dir=served_dir, name=args.new_name,
                            address=args.address, margin=args.margin)
    print(f"on {held_out_share(record)} ({record['held_out']}):")
    for side in ("served", "candidate"):
        scores = record[side]
        print(f"  {side:9s} {scores['trial_id']}: accuracy {scores['accuracy']:.4f}, macro-F1 "
              f"{scores['f1_macro']:.4f}, worst-class F1 {scores['f1_worst']:.4f}")
    print(record["reason"])
    promoted, error = _promote(cfg, result.best["export_dir"], url, args.address) \
        if record["promote"] else (None, None)
    update_sweep_meta(result.path, retune={**record, "promoted_to": promoted,
                                           "promotion_error": error})
    if promoted:
        print(f"promoted: {url} now serves {promoted['trial_id']} (model {promoted['model_id']})")
    elif record["promote"]:
        print(f"not promoted ({error or 'no endpoint runs'}); serve it with: "
              f"sftune serve {result.name}")
    else:
        print(f"kept the served model; the new one is exported at {result.best['export_dir']}")
    return 1 if error else 0


def _served_model(cfg: AppConfig, served: str | None) -> tuple[str | None, str | None]:
    """The served model's directory and the endpoint's URL: what ``GET /model`` on
    ``serve.port`` names (``served`` overrides the directory); no endpoint: (served, None)."""
    from dashboard.client import EndpointDown, EndpointError, model_info
    from serving.state import url_for

    url = url_for(cfg.serve)
    try:
        info = model_info(url, _api_key(cfg))
    except EndpointDown:
        return served, None
    except EndpointError as err:  # a key to set, or a server in trouble: say so, change nothing
        raise ValueError(str(err)) from None
    where = served or info.get("model_dir")
    if not served and not Path(str(where)).is_dir():
        raise FileNotFoundError(f"{url} serves {where}, which is not on this machine; give "
                                "the served model's directory with --served DIR")
    return where, url


def _promote(cfg: AppConfig, export_dir: str, url: str | None,
             address: str | None) -> tuple[dict | None, str | None]:
    """Swap the new model into the running endpoint (rolling, no failed request) and read
    back what ``GET /model`` then says it serves; or why it could not be swapped in."""
    if url is None:
        return None, None
    from dashboard.client import model_info
    from serving.deploy import ServeError, promote

    try:
        promote(export_dir, cfg.serve, address=address)
    except ServeError as err:
        return None, str(err)
    info = model_info(url, _api_key(cfg))
    return {"url": url, "trial_id": info.get("trial_id"), "model_id": info.get("model_id"),
            "model_dir": info.get("model_dir")}, None


def _api_key(cfg: AppConfig) -> str | None:
    """The endpoint's API key, from the variable serve.api_key_env names (None: no key)."""
    return os.environ.get(cfg.serve.api_key_env) if cfg.serve.api_key_env else None


def cmd_assets(args: argparse.Namespace) -> int:
    from search import assets

    home = assets.install(args.home)
    print(f"built-in model and data installed under {home}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sftune")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftune",
        description="Hyperparameter search for supervised fine-tuning of text classifiers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sftune {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each package owns its subcommands and adds them the same way, by a `register(sub)`; their
    # cli modules import nothing heavy, so `sftune --help` stays fast, and the core of `search`
    # never imports serving or the dashboard.
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def register(sub: argparse._SubParsersAction) -> None:
    """Add search's subcommands (train, sweep, demo, results, list, best, assets)."""
    train = sub.add_parser("train", help="train one trial at the config's default params (no Ray)")
    _add_config_args(train)
    train.add_argument("--output", type=Path, help="output dir (default: runs/train-<time>)")
    train.add_argument("--quiet", action="store_true", help="no per-step progress bar")
    train.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="search hyperparameters with Ray Tune + Optuna + ASHA")
    _add_config_args(sweep)
    sweep.add_argument("--name", help="experiment name (default: sweep-<time>)")
    sweep.add_argument("--resume", metavar="NAME", help="resume the interrupted sweep NAME")
    sweep.add_argument("--address", help="Ray cluster to join, e.g. auto (default: local Ray; "
                       "RAY_ADDRESS is honoured)")
    sweep.add_argument("--warm-start", metavar="OLD", help="start from sweep OLD: its trials "
                       "as history (same data), or its top configurations first (new data)")
    sweep.add_argument("--no-export", action="store_true",
                       help="skip the final test evaluation and export of the best trial")
    sweep.set_defaults(func=cmd_sweep)

    demo = sub.add_parser("demo", help="small sweep, then serve the best model and open the "
                          "dashboard (Ctrl-C stops both)")
    _add_config_args(demo)
    demo.add_argument("--name", help="experiment name (default: demo-<time>)")
    demo.set_defaults(func=cmd_demo, config=BUILTIN_CONFIGS / "demo.yaml")

    results = sub.add_parser("results", help="print a sweep's top trials and disk use")
    results.add_argument("name", help="sweep name")
    _add_storage_args(results)
    results.add_argument("--top", type=int, default=10, help="trials to show")
    results.add_argument("--json", action="store_true",
                         help="print the sweep's metadata and every trial's best row as JSON")
    results.set_defaults(func=cmd_results)

    listing = sub.add_parser("list", help="the sweeps under a storage path, newest first")
    _add_storage_args(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)

    best = sub.add_parser("best", help="evaluate a sweep's best trial on test and export it")
    best.add_argument("name", help="sweep name")
    _add_storage_args(best)
    best.add_argument("--export", help="export dir or bucket URI (default: <experiment>/export)")
    best.add_argument("--trial", help="a trial id other than the best")
    best.set_defaults(func=cmd_best)

    retune = sub.add_parser(
        "retune", help="re-tune a sweep on new data (warm start); promote the new model to the "
        "endpoint only if it beats the served one by tune.promotion_margin",
        description="Run a sweep on new data warm-started from sweep NAME (its config, with "
        "--set on top), test the served model and the new one on the new test rows neither "
        "trained on, and hot-swap the new one into the endpoint on serve.port only if it wins "
        "by the margin. The decision and both scores are kept in the new sweep's sweep.json.",
    )
    retune.add_argument("name", help="the sweep whose model is served")
    retune.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="what changed, e.g. --set data.source=new.csv")
    retune.add_argument("--storage", help="where the sweeps are (default: tune.storage_path)")
    retune.add_argument("--new-name", help="the new sweep's name (default: NAME-retune-<time>)")
    retune.add_argument("--margin", type=float,
                        help="lead needed to promote (default: tune.promotion_margin)")
    retune.add_argument("--served", metavar="DIR", help="the served model's directory (default: "
                        "what the endpoint's /model names, else NAME's export)")
    retune.add_argument("--address", help="Ray cluster to sweep and serve on")
    retune.set_defaults(func=cmd_retune)

    assets = sub.add_parser("assets", help="manage the built-in model and dataset")
    assets_sub = assets.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = assets_sub.add_parser("install", help="download and extract them (no deps)")
    install.add_argument("--home", type=Path, help="target dir (default: <venv>/share/sftune)")
    install.set_defaults(func=cmd_assets)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"sftune: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        # DataError, ModelError, CheckpointError and missing assets: a clear line, no traceback
        # (SFTUNE_TRACEBACK=1 shows where it came from, for a bug report).
        if os.environ.get("SFTUNE_TRACEBACK"):
            traceback.print_exc()
        print(f"sftune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sftune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
