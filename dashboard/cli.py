"""`sftune dashboard`: registered into the main CLI. Keep module import light (no streamlit).

The command resolves its settings (flags over the config's ``dashboard`` section) and runs
``streamlit run`` as a child process, passing the settings through the environment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dashboard.settings import Settings
    from search.config import AppConfig

__all__ = ["cmd_dashboard", "register", "resolve", "run_dashboard", "settings_for"]

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


def settings_for(cfg: AppConfig, *, storage: str | None = None, serve_url: str | None = None,
                 api_key_env: str | None = None) -> Settings:
    """The app's settings: the given values over the config's ``dashboard`` section."""
    from dashboard.settings import Settings

    board = cfg.dashboard
    storage = storage or cfg.tune.storage_path
    if "://" not in storage:  # the child runs elsewhere in the tree: pass an absolute path
        storage = str(Path(storage).expanduser().resolve())
    return Settings(
        storage=storage,
        serve_url=serve_url or board.serve_url,
        api_key_env=api_key_env or board.api_key_env or cfg.serve.api_key_env,
        refresh_s=board.refresh_s,
    )


def resolve(args: argparse.Namespace) -> tuple[Settings, str, int]:
    """The app's :class:`~dashboard.settings.Settings` and the (host, port) to bind."""
    from search.config import load_config

    cfg = load_config(args.config, args.overrides)
    settings = settings_for(cfg, storage=args.storage, serve_url=args.serve_url,
                            api_key_env=args.api_key_env)
    return settings, (args.host or cfg.dashboard.host), (args.port or cfg.dashboard.port)


def cmd_dashboard(args: argparse.Namespace) -> int:
    settings, host, port = resolve(args)
    return run_dashboard(settings, host=host, port=port, print_command=args.print_command)


def run_dashboard(settings: Settings, *, host: str, port: int,
                  print_command: bool = False) -> int:
    """Run the Streamlit app until interrupted; returns its exit code (or print its command)."""
    from dashboard.launch import LOOPBACK, streamlit_command

    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    command = streamlit_command(host=host, port=port)
    if print_command:
        print(shlex.join(command))
        for key, value in sorted(settings.to_env().items()):
            print(f"{key}={value}")
        return 0
    if host not in LOOPBACK:
        print(f"sftune: warning: the dashboard has no login and binds {host}; anyone who can "
              "reach it can read every sweep", file=sys.stderr)
    print(f"sftune dashboard: http://{host}:{port}  (sweeps under {settings.storage}, "
          f"endpoint {settings.serve_url})", flush=True)
    return run_child(command, env={**os.environ, **settings.to_env()})


#: Signals a supervisor or a terminal stops the dashboard with; each is passed on to Streamlit.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Run the Streamlit server until it exits, passing SIGTERM, SIGINT and SIGHUP on to it.

    Python's default SIGTERM handling would end this process at once and leave the child
    serving, orphaned; a process supervisor stops services with SIGTERM.
    """
    child = subprocess.Popen(command, env=env)
    previous = {sig: signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
                for sig in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # this process is ending for another reason: don't orphan it
            child.terminate()
            child.wait(timeout=30)
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N
