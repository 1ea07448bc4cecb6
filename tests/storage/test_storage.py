"""The storage layer on a local directory and on a real S3 server (127.0.0.1), the same calls."""

from __future__ import annotations

import pytest

from search import storage


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return storage.join(request.getfixturevalue("bucket"), "sweeps")


def test_a_file_round_trips_and_is_replaced_whole(base):
    target = storage.join(base, "one", "sweep.json")
    assert not storage.exists(target)
    storage.write_bytes(target, b'{"v": 1}')
    storage.write_bytes(target, b'{"v": 2}')
    assert storage.exists(target)
    assert storage.read_bytes(target) == b'{"v": 2}'


def test_a_missing_file_is_file_not_found_naming_it(base):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        storage.read_bytes(storage.join(base, "nothing.json"))


def test_directories_are_listed_by_name(base):
    for name in ("b-sweep", "a-sweep"):
        storage.write_bytes(storage.join(base, name, "sftune", "sweep.json"), b"{}")
    storage.write_bytes(storage.join(base, "loose-file.txt"), b"x")
    assert storage.list_dirs(base) == ["a-sweep", "b-sweep"]
    assert storage.list_dirs(storage.join(base, "absent")) == []


def test_a_directory_uploads_downloads_and_is_removed(base, tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    remote = storage.join(base, "export")
    storage.upload_dir(source, remote)
    copy = storage.download_dir(remote, tmp_path / "copy")
    assert (copy / "config.json").read_text() == "{}"
    assert (copy / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 64
    storage.remove(remote)
    assert not storage.exists(storage.join(remote, "config.json"))
    storage.remove(remote)  # already gone: no error


def test_downloading_what_is_not_a_directory_says_so(base, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        storage.download_dir(storage.join(base, "absent"), tmp_path / "copy")


def test_an_unknown_scheme_is_a_clear_error():
    with pytest.raises(storage.StorageError, match="cannot open nope://bucket/x"):
        storage.exists("nope://bucket/x")


def test_join_and_root_keep_uris_and_resolve_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.join("s3://b/sweeps/", "name", "sftune") == "s3://b/sweeps/name/sftune"
    assert storage.root("runs") == str(tmp_path / "runs")
    assert storage.root("gs://b/x/") == "gs://b/x"
    assert storage.local_path("s3://b/x") is None


def test_a_bucket_copy_is_downloaded_once_and_again_when_it_changes(bucket, tmp_path):
    source = tmp_path / "model"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"old")
    remote = storage.join(bucket, "export")
    storage.upload_dir(source, remote)
    first = storage.local_copy(remote, tmp_path / "cache")
    assert storage.local_copy(remote, tmp_path / "cache") == first  # cached, not downloaded again
    (source / "weights.bin").write_bytes(b"new weights")  # the export is overwritten in place
    storage.upload_dir(source, remote)
    second = storage.local_copy(remote, tmp_path / "cache")
    assert second != first and (second / "weights.bin").read_bytes() == b"new weights"
    assert storage.local_copy(str(source)) == source  # a local directory is used as it is


def test_a_model_in_a_bucket_is_downloaded_once_and_loads(bucket, tiny_model_dir):
    from search.model import ModelError, load_tokenizer, resolve_model_dir

    uri = storage.join(bucket, "models", "tiny")
    storage.upload_dir(tiny_model_dir, uri)
    local = resolve_model_dir(uri)
    assert (local / "config.json").is_file() and resolve_model_dir(uri) == local
    assert load_tokenizer(local)("great fun")["input_ids"]
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_dir(storage.join(bucket, "models", "missing"))
