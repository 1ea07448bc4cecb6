"""`sftune dashboard`: safe streamlit flags, settings through the environment, light import."""

from __future__ import annotations

import subprocess
import sys

from dashboard.settings import Settings
from search.cli import main


def _printed(capsys, *args: str) -> tuple[str, dict[str, str]]:
    assert main(["dashboard", "--print-command", *args]) == 0
    command, *env_lines = capsys.readouterr().out.strip().splitlines()
    return command, dict(line.split("=", 1) for line in env_lines)


def test_streamlit_is_bound_to_loopback_without_usage_stats_and_keeps_xsrf_and_cors(
    capsys, tmp_path
):
    command, env = _printed(capsys, "--storage", str(tmp_path), "--port", "8600")
    assert "-m streamlit run" in command and command.split()[4].endswith("dashboard/app.py")
    for flag in ("--server.address=127.0.0.1", "--server.port=8600", "--server.headless=true",
                 "--browser.gatherUsageStats=false", "--server.enableXsrfProtection=true",
                 "--server.enableCORS=true"):
        assert flag in command.split()
    assert env["SFTUNE_DASHBOARD_STORAGE"] == str(tmp_path)
    assert env["SFTUNE_DASHBOARD_SERVE_URL"] == "http://127.0.0.1:8000"
    assert "SFTUNE_DASHBOARD_API_KEY_ENV" not in env


def test_flags_override_the_config_and_the_config_overrides_defaults(capsys, tmp_path):
    command, env = _printed(capsys, "--set", "dashboard.port=9100", "--set",
                            f"tune.storage_path={tmp_path}", "--set", "serve.api_key_env=K1")
    assert "--server.port=9100" in command.split()
    assert env["SFTUNE_DASHBOARD_STORAGE"] == str(tmp_path)
    assert env["SFTUNE_DASHBOARD_API_KEY_ENV"] == "K1"  # falls back to the server's variable
    command, env = _printed(capsys, "--set", "dashboard.port=9100", "--port", "9200",
                            "--serve-url", "http://10.0.0.5:8000", "--api-key-env", "K2",
                            "--host", "0.0.0.0")
    assert "--server.port=9200" in command.split()
    assert "--server.address=0.0.0.0" in command.split()
    assert env["SFTUNE_DASHBOARD_SERVE_URL"] == "http://10.0.0.5:8000"
    assert env["SFTUNE_DASHBOARD_API_KEY_ENV"] == "K2"


def test_a_bad_config_key_is_a_clear_error(capsys):
    assert main(["dashboard", "--print-command", "--set", "dashboard.prot=1"]) == 2
    assert "dashboard.prot: unknown key" in capsys.readouterr().err


def test_importing_the_cli_module_stays_light():
    code = ("import sys, dashboard.cli; "
            "print(sorted(m for m in ('streamlit', 'pandas', 'torch', 'plotly') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_settings_round_trip_through_the_environment_and_never_carry_the_key():
    settings = Settings(storage="/s", serve_url="http://h:1", api_key_env="MY_KEY",
                        refresh_s=2.5)
    env = settings.to_env()
    assert Settings.from_env(env) == settings and "s3cret" not in env.values()
    assert settings.api_key({"MY_KEY": "s3cret"}) == "s3cret"
    assert settings.api_key({}) is None and Settings().api_key({"MY_KEY": "x"}) is None
    assert Settings.from_env({"SFTUNE_DASHBOARD_REFRESH_S": "soon"}).refresh_s == 5.0
    assert Settings.from_env({"SFTUNE_DASHBOARD_REFRESH_S": "0.1"}).refresh_s == 1.0


def test_settings_for_a_config_are_typed_for_callers_such_as_demo(tmp_path):
    from dashboard.cli import settings_for
    from search.config import load_config

    cfg = load_config(None, [f"tune.storage_path={tmp_path}", "serve.api_key_env=K"])
    settings = settings_for(cfg, serve_url="http://127.0.0.1:8123")
    assert settings == Settings(storage=str(tmp_path), serve_url="http://127.0.0.1:8123",
                                api_key_env="K", refresh_s=cfg.dashboard.refresh_s)
