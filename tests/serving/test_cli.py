"""`sftune serve` without starting a server: config emission, the app builder, clear errors."""

from __future__ import annotations

import socket

import pytest
import yaml

from search.cli import main


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_STATE_DIR", str(tmp_path / "state"))


def test_emit_config_sets_host_explicitly_and_never_the_key(tmp_path, checkpoints, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    monkeypatch.setenv("SFTUNE_TEST_KEY", "do-not-write-this-key-anywhere")
    target = tmp_path / "serve.yaml"
    code = main(["serve", "--model", str(checkpoints["A"]), "--emit-config", str(target),
                 "--port", "9123", "--api-key-env", "SFTUNE_TEST_KEY",
                 "--set", "serve.max_batch_size=32", "--set", "serve.max_texts=16"])
    assert code == 0
    text = target.read_text()
    assert "do-not-write-this-key-anywhere" not in text
    config = yaml.safe_load(text)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9123, "request_timeout_s": 30.0}
    [app] = config["applications"]
    assert app["import_path"] == "serving.app:build_app" and app["route_prefix"] == "/"
    assert app["args"]["model"] == str(checkpoints["A"])
    assert app["args"]["api_key_env"] == "SFTUNE_TEST_KEY" and app["args"]["max_batch_size"] == 32
    ServeDeploySchema.model_validate(config)  # what `serve deploy` will check


def test_builder_validates_serve_run_style_string_args(checkpoints):
    from pydantic import ValidationError
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from serving.app import build_app

    app = call_user_app_builder_with_args_if_necessary(
        build_app, {"model": str(checkpoints["A"]), "max_batch_size": "16", "max_texts": "8"})
    options = app._bound_deployment._deployment_config
    assert options.max_ongoing_requests == 64 and options.max_surge_percent == 100
    with pytest.raises(ValidationError, match="max_bach_size"):
        call_user_app_builder_with_args_if_necessary(
            build_app, {"model": str(checkpoints["A"]), "max_bach_size": "16"})


def test_stop_without_a_server_says_so(capsys):
    assert main(["serve", "--stop", "--port", "9124"]) == 1
    assert "no sftune server runs on port 9124" in capsys.readouterr().err


def _owner_stand_in():
    """A process that, like a foreground `sftune serve`, ends cleanly on SIGTERM."""
    import subprocess
    import sys

    script = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
              "print('ready', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_stop_ends_a_foreground_server_and_names_the_ones_it_did_not_stop(capsys):
    from serving.state import ServerState, write_state

    owner = _owner_stand_in()
    try:
        write_state(ServerState(pid=owner.pid, address="127.0.0.1:6379", url="http://x",
                                port=9125, app_name="sftune", model_dir="/models/a",
                                started_at="now"))
        assert main(["serve", "--stop", "--port", "9126"]) == 1
        err = capsys.readouterr().err
        assert "no sftune server runs on port 9126" in err
        assert f"port 9125 (pid {owner.pid}, /models/a)" in err and "--stop --port" in err
        assert main(["serve", "--stop", "--port", "9125"]) == 0
        assert owner.wait(timeout=10) == 0  # it got SIGTERM, as Ctrl-C would end it
    finally:
        owner.kill()


def test_stop_on_a_port_another_program_listens_on_says_so(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--stop", "--port", str(port)]) == 1
    assert "but something listens there" in capsys.readouterr().err


def test_busy_port_and_missing_key_fail_before_starting_ray(checkpoints, capsys, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(checkpoints["A"]), "--port", str(port)]) == 1
    assert "pick --port" in capsys.readouterr().err
    monkeypatch.delenv("SFTUNE_UNSET_KEY", raising=False)
    assert main(["serve", "--model", str(checkpoints["A"]), "--api-key-env",
                 "SFTUNE_UNSET_KEY"]) == 2
    assert "SFTUNE_UNSET_KEY" in capsys.readouterr().err


def test_nothing_to_serve_is_a_clear_error(capsys):
    assert main(["serve"]) == 2
    assert "give a sweep NAME, --trial ID or --model DIR" in capsys.readouterr().err


def test_batch_wait_is_zero_alone_and_never_longer_than_the_last_forward():
    from serving.app import batch_wait_s

    assert batch_wait_s(0.03, 0.006, busy=False) == 0.0    # a lone request runs at once
    assert batch_wait_s(0.03, None, busy=True) == 0.03     # no forward timed yet: the config's
    assert batch_wait_s(0.03, 0.006, busy=True) == 0.006   # fast model: wait one forward's time
    assert batch_wait_s(0.03, 0.120, busy=True) == 0.03    # slow model: the config caps it
