"""cluster.yaml validates offline with Ray's own launcher code and asks for GPU workers."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_with_rays_schema(cluster):
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)  # raises jsonschema's ValidationError otherwise
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_uses_a_current_ray_gpu_image_and_installs_sftune(cluster):
    image = cluster["docker"]["image"]
    assert image.startswith("rayproject/ray:") and image.endswith("-gpu")
    assert "ray-ml" not in image
    from importlib import metadata

    assert image.split(":")[1].startswith(metadata.version("ray"))
    commands = " ".join(cluster["setup_commands"])
    assert "pip install" in commands and "sftune assets install" in commands


def test_head_trains_nothing_and_workers_are_gpu_nodes(cluster):
    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != cluster["head_node_type"]]
    assert workers and all(t["node_config"]["InstanceType"].startswith("g") for t in workers)
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in workers)


def test_a_broken_cluster_yaml_is_rejected(cluster):
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["head.cpu"]["not_a_field"] = 1
    with pytest.raises(jsonschema.ValidationError, match="not_a_field"):
        validate_config(prepare_config(broken))
