"""The ``streamlit run`` command line of the dashboard, with its safety flags in one place.

Streamlit binds every interface unless told otherwise, and the dashboard has no login, so the
command pins the address, turns usage statistics off and keeps XSRF and CORS protection on.
Imports nothing heavy: ``sftune --help`` and the tests build the command without Streamlit.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["APP_PATH", "LOOPBACK", "streamlit_command"]

APP_PATH = Path(__file__).with_name("app.py")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def streamlit_command(*, host: str = "127.0.0.1", port: int = 8501,
                      python: str | None = None) -> list[str]:
    """``python -m streamlit run dashboard/app.py`` bound to ``host:port``, headless."""
    flags = {
        "server.address": host,
        "server.port": str(port),
        "server.headless": "true",  # no browser to open, no e-mail prompt on first run
        "browser.gatherUsageStats": "false",
        "server.enableXsrfProtection": "true",
        "server.enableCORS": "true",
        # Nobody edits the app while it runs; watching files costs CPU on a 2-core box.
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "global.developmentMode": "false",
        "client.toolbarMode": "viewer",
    }
    args = [f"--{key}={value}" for key, value in flags.items()]
    return [python or sys.executable, "-m", "streamlit", "run", str(APP_PATH), *args]
