"""What the app is pointed at: storage path, endpoint URL, where the API key lives, refresh rate.

``sftune dashboard`` passes these to the ``streamlit run`` child as environment variables (they
survive Streamlit's own argument parsing and reach AppTest unchanged). The API key itself is never
passed or shown: only the *name* of the variable that holds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENV", "Settings"]

ENV = {
    "storage": "SFTUNE_DASHBOARD_STORAGE",
    "serve_url": "SFTUNE_DASHBOARD_SERVE_URL",
    "api_key_env": "SFTUNE_DASHBOARD_API_KEY_ENV",
    "refresh_s": "SFTUNE_DASHBOARD_REFRESH_S",
}


@dataclass(frozen=True)
class Settings:
    """The app's settings; defaults match :class:`search.config.DashboardConfig`."""

    storage: str = "runs"
    serve_url: str = "http://127.0.0.1:8000"
    api_key_env: str | None = None
    refresh_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {field: environ[var] for field, var in ENV.items() if environ.get(var)}
        if "refresh_s" in values:
            try:
                values["refresh_s"] = max(1.0, float(values["refresh_s"]))
            except ValueError:
                del values["refresh_s"]  # a bad value must not stop the app; use the default
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        env = {ENV["storage"]: self.storage, ENV["serve_url"]: self.serve_url,
               ENV["refresh_s"]: f"{self.refresh_s:g}"}
        if self.api_key_env:
            env[ENV["api_key_env"]] = self.api_key_env
        return env

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The bearer key, read from the named variable at call time (None when unset)."""
        environ = os.environ if environ is None else environ
        return environ.get(self.api_key_env) or None if self.api_key_env else None
