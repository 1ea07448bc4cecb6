"""`sftune serve`: registered into the main CLI. Keep module import light (no ray, no torch).

    sftune serve NAME                    # the sweep's best trial, in the foreground (Ctrl-C stops)
    sftune serve NAME --trial ID         # promote another trial: updates a running server in place
    sftune serve --model DIR --detach    # any exported checkpoint, in the background
    sftune serve --stop                  # stop the background server
    sftune serve NAME --emit-config serve.yaml   # a Serve config for `serve deploy`
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

__all__ = ["cmd_serve", "register"]

EPILOG = """examples:
  sftune serve my-sweep                      serve the best trial at http://127.0.0.1:8000
  sftune serve my-sweep --trial 3f2a_00004   swap in another trial, no downtime
  sftune serve --model runs/export --detach  run in the background; `sftune serve --stop` ends it
  SFTUNE_KEY=... sftune serve my-sweep --api-key-env SFTUNE_KEY
  curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"text": "A gem."}'
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand to the main parser."""
    parser = sub.add_parser(
        "serve", help="serve a sweep's best trial (or any checkpoint) behind Ray Serve",
        description="Deploy a checkpoint behind Ray Serve with dynamic batching. Running it "
        "again with another model updates the running server in place.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="sweep name under tune.storage_path")
    parser.add_argument("--trial", help="serve this trial instead of the sweep's best")
    parser.add_argument("--model", help="serve an exported checkpoint directory")
    parser.add_argument("--storage", help="results root (default: tune.storage_path)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000)")
    parser.add_argument("--replicas", type=int,
                        help="model replicas (default: 2 on CPU, enough to fill one GPU on GPUs)")
    parser.add_argument("--gpus-per-replica", type=float, help="GPUs per replica (default 0)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require `Authorization: Bearer $VAR` on every route but /healthz")
    parser.add_argument("--address", help="deploy into a running Ray cluster (e.g. `auto`)")
    parser.add_argument("--detach", action="store_true", help="run in the background and return")
    parser.add_argument("--stop", action="store_true", help="stop the server on --port")
    parser.add_argument("--emit-config", type=Path, metavar="FILE",
                        help="write a Serve config YAML for `serve deploy` and exit")
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. serve.port=8080")
    parser.set_defaults(func=cmd_serve)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    # Flags become --set overrides, so they are validated with the rest of the config.
    flags = {"host": args.host, "port": args.port, "replicas": args.replicas,
             "gpus_per_replica": args.gpus_per_replica, "api_key_env": args.api_key_env}
    return [f"serve.{key}={value}" for key, value in flags.items() if value is not None]


def cmd_serve(args: argparse.Namespace) -> int:
    from search.config import load_config
    from serving import deploy

    cfg = load_config(args.config, list(args.overrides) + _flag_overrides(args))
    serve_cfg = cfg.serve
    try:
        if args.stop:
            return _stop(serve_cfg, args.address)
        from serving.resolve import resolve_model

        model = resolve_model(name=args.name, trial=args.trial, model=args.model,
                              storage_path=args.storage or cfg.tune.storage_path)
        if args.emit_config:
            path = deploy.emit_config(model, serve_cfg, args.emit_config)
            print(f"wrote {path}; run it with: serve deploy {path}  (or serve run {path})")
            return 0
        return _serve(model, serve_cfg, args)
    except deploy.ServeError as err:
        print(f"sftune: error: {err}", file=sys.stderr)
        return 1


def _stop(serve_cfg, address: str | None) -> int:
    from serving import deploy

    if deploy.stop(serve_cfg, address=address):
        print(f"stopped the server on port {serve_cfg.port}")
        return 0
    print(_nothing_to_stop(serve_cfg), file=sys.stderr)
    return 1


def _nothing_to_stop(serve_cfg) -> str:
    """Why --stop stopped nothing, naming what does run: never "nothing runs" while a server
    (of sftune, on another port, or another program on this one) does."""
    from serving.state import STATE_ENV, ServeError, running_servers

    servers = running_servers()
    if servers:
        listed = "; ".join(f"port {s.port} (pid {s.pid}, {s.model_dir})" for s in servers)
        return (f"no sftune server runs on port {serve_cfg.port}; sftune servers on this "
                f"machine: {listed}. Stop one with: sftune serve --stop --port PORT")
    try:
        _check_port_free(serve_cfg.host, serve_cfg.port)
    except ServeError:
        return (f"no sftune server is registered on port {serve_cfg.port}, but something "
                f"listens there: another program, or an sftune server started by another user "
                f"or with another {STATE_ENV}; stop it where it was started (Ctrl-C there)")
    return f"no sftune server runs on port {serve_cfg.port}"


def _serve(model, serve_cfg, args: argparse.Namespace) -> int:
    from serving import deploy
    from serving.auth import key_hash_from_env

    key_hash_from_env(serve_cfg.api_key_env)  # a missing key fails now, not in a replica
    running = deploy.read_state(serve_cfg.port)
    if running is not None or (args.address and args.detach):
        url = deploy.deploy(model, serve_cfg, address=args.address)
        print(f"updated {url} in place: now serving {_describe(model)}")
        return 0
    _check_port_free(serve_cfg.host, serve_cfg.port)
    if args.detach:
        url = deploy.start_background(model, serve_cfg)
        print(f"serving {_describe(model)} at {url} in the background; "
              f"stop it with: sftune serve --stop --port {serve_cfg.port}")
        return 0
    deploy.serve_forever(model, serve_cfg, address=args.address,
                         on_ready=lambda url: _print_ready(url, model, serve_cfg))
    return 0


def _describe(model) -> str:
    trial = f"trial {model.trial_id}" if model.trial_id else "checkpoint"
    return f"{trial} from {model.source or model.model_dir}"


def _print_ready(url: str, model, serve_cfg) -> None:
    auth = " -H 'Authorization: Bearer $KEY'" if serve_cfg.api_key_env else ""
    print(f"serving {_describe(model)} at {url}  (docs: {url}/docs)")
    print(f"  curl -s {url}/predict -H 'Content-Type: application/json'{auth} "
          "-d '{\"text\": \"A gem of a film.\"}'")
    print("press Ctrl-C to stop", flush=True)


def _check_port_free(host: str, port: int) -> None:
    from serving.deploy import ServeError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ServeError(f"cannot bind {host}:{port} ({err.strerror}); another program "
                             "uses it: pick --port") from None
