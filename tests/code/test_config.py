from pathlib import Path

import pytest
import yaml

from search.config import ConfigError, Range, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", [None, "default", "demo", "full", "smoke"])
def test_every_shipped_config_has_its_default_point_inside_its_space(name):
    cfg = load_config(name)
    params = cfg.default_params().model_dump()
    for dimension, dim in cfg.space.searched().items():
        value = params[dimension]
        if isinstance(dim, Range):
            assert dim.low <= value <= dim.high, (name, dimension, value)
        else:
            assert value in dim.choices, (name, dimension, value)
    assert isinstance(params["frozen_depth"], int) and isinstance(params["joint_epochs"], int)


def test_overrides_are_parsed_as_yaml_and_nested():
    assert parse_overrides(["train.epochs=3", "space.alpha={low: 1, high: 10}"]) == {
        "train": {"epochs": 3}, "space": {"alpha": {"low": 1, "high": 10}},
    }
    cfg = load_config(None, ["train.epochs=3", "space.alpha=7"])
    assert cfg.train.epochs == 3
    assert cfg.default_params().alpha == 7


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("trian.epochs=3", "trian: unknown key; allowed here: dashboard, data, model"),
        ("train.epoch=3", "train.epoch: unknown key; allowed here: batch_size"),
        ("train.epochs=abc", "train.epochs: Input should be a valid integer"),
        ("train.epochs=0", "train.epochs: Input should be greater than or equal to 1"),
        ("train.metric=loss",
         "train.metric: Input should be 'val_accuracy', 'val_f1_macro' or 'val_f1_worst'"),
        ("space.alpha=abc", "space.alpha: got 'abc'; allowed: a number"),
        ("space.alpha={lo: 1, hi: 2}", "space.alpha: low: Field required"),
        ("space.lr={low: 0.1, high: 0.01}", "space.lr: low (0.1) must be < high (0.01)"),
        ("space.lr={low: 0, high: 0.1, log: true}", "space.lr: log scale needs low > 0"),
        ("space.joint_epochs=5", "space.joint_epochs (5) exceeds train.epochs (2)"),
    ],
)
def test_bad_config_names_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert needle in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


def test_range_midpoint_is_geometric_on_log_scale():
    assert Range(low=1, high=100, log=True).midpoint() == pytest.approx(10)
    assert Range(low=0, high=1).midpoint() == pytest.approx(0.5)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert yaml.safe_load(path.read_text())  # not an empty file
    cfg.default_params()  # the default point is a valid trial


def test_on_off_words_survive_yaml_booleans(tmp_path):
    assert load_config(None, ["train.prefix_cache=off"]).train.prefix_cache == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  prefix_cache: on\n")
    assert load_config(path).train.prefix_cache == "on"
    assert load_config(None, ["space.lr=1e-5"]).default_params().lr == 1e-5  # not a string


def test_built_in_configs_load_by_name_and_an_unknown_name_lists_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the names resolve to the packaged files
    assert load_config("smoke").tune.num_samples == load_config(
        Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml").tune.num_samples
    assert load_config("default").tune.time_budget_s is not None
    with pytest.raises(ConfigError, match=r"built-in configs, by name: default, demo, full, "):
        load_config("nope")
