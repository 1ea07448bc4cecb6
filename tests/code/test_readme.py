"""The README stays true: its config reference is the config's own, its commands exist."""

import importlib.util
from pathlib import Path

from search.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _update_readme():
    script = ROOT / "scripts" / "update_readme.py"
    spec = importlib.util.spec_from_file_location("update_readme", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current():
    readme = (ROOT / "README.md").read_text()
    assert _update_readme().render(readme) == readme, "run scripts/update_readme.py"


def test_every_documented_subcommand_exists():
    readme = (ROOT / "README.md").read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for name in ("sweep", "results", "list", "best", "train", "serve", "dashboard", "assets",
                 "retune"):
        assert f"sftune {name}" in readme
        assert name in commands


def test_two_readme_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
