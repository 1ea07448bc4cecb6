"""`sftune dashboard`: registered into the main CLI. Keep module import light (no streamlit).

The command resolves its settings (flags over the config's ``dashboard`` section) and runs
``streamlit run`` as a child process, passing the settings through the environment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["cmd_dashboard", "register", "resolve"]

EXAMPLES = """examples:
  sftune dashboard --storage runs
  sftune dashboard --serve-url http://127.0.0.1:8000 --api-key-env SFTUNE_API_KEY
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `dashboard` subcommand to the main parser."""
    parser = sub.add_parser(
        "dashboard", help="browse sweeps and query the model in a Streamlit app",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one config key (repeatable)")
    parser.add_argument("--storage", help="dir holding the sweeps (default: tune.storage_path)")
    parser.add_argument("--serve-url", help="Serve endpoint (default: dashboard.serve_url)")
    parser.add_argument("--port", type=int, help="port (default: dashboard.port, 8501)")
    parser.add_argument("--host", help="bind address (default: dashboard.host, 127.0.0.1)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="env var holding the endpoint's bearer key (never the key itself)")
    parser.add_argument("--print-command", action="store_true",
                        help="print the streamlit command and its settings, and exit")
    parser.set_defaults(func=cmd_dashboard)


def resolve(args: argparse.Namespace):
    """The app's :class:`~dashboard.settings.Settings` and the (host, port) to bind."""
    from dashboard.settings import Settings
    from search.config import load_config

    cfg = load_config(args.config, args.overrides)
    board = cfg.dashboard
    storage = args.storage or cfg.tune.storage_path
    if "://" not in storage:  # the child runs elsewhere in the tree: pass an absolute path
        storage = str(Path(storage).expanduser().resolve())
    settings = Settings(
        storage=storage,
        serve_url=args.serve_url or board.serve_url,
        api_key_env=args.api_key_env or board.api_key_env or cfg.serve.api_key_env,
        refresh_s=board.refresh_s,
    )
    return settings, (args.host or board.host), (args.port or board.port)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Run the Streamlit app until interrupted; returns its exit code."""
    from dashboard.launch import LOOPBACK, streamlit_command

    settings, host, port = resolve(args)
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    command = streamlit_command(host=host, port=port)
    if args.print_command:
        print(shlex.join(command))
        for key, value in sorted(settings.to_env().items()):
            print(f"{key}={value}")
        return 0
    if host not in LOOPBACK:
        print(f"sftune: warning: the dashboard has no login and binds {host}; anyone who can "
              "reach it can read every sweep", file=sys.stderr)
    print(f"sftune dashboard: http://{host}:{port}  (sweeps under {settings.storage}, "
          f"endpoint {settings.serve_url})", flush=True)
    return subprocess.call(command, env={**os.environ, **settings.to_env()})
