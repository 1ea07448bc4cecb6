"""One storage layer for everything sftune writes and reads outside a trial's memory: a local
path, an NFS mount, or an ``s3://`` / ``gs://`` URI, all through :mod:`pyarrow.fs`.

Ray Tune opens ``tune.storage_path`` with the same :func:`pyarrow.fs.FileSystem.from_uri`, so
sftune and Tune see the same bucket with the same credentials, from the standard variables the
AWS SDK reads (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``; Google's for ``gs://``). Nothing here is written per provider.

A location is a plain string: a local path (relative ones resolve against the working
directory) or a URI. Writes of a whole file are atomic on both sides: locally through
:func:`search.atomic.replace_atomically`, on a bucket because an object appears only when its
upload completes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from search.atomic import replace_atomically

__all__ = [
    "StorageError",
    "download_dir",
    "exists",
    "filesystem",
    "is_dir",
    "is_empty_dir",
    "is_remote",
    "join",
    "list_dirs",
    "local_copy",
    "local_path",
    "modified_ns",
    "read_bytes",
    "remove",
    "root",
    "total_size",
    "upload_dir",
    "write_bytes",
]


class StorageError(OSError):
    """A location cannot be read or written; the message names it and says why."""


def is_remote(location: str) -> bool:
    return "://" in str(location)


def root(location: str) -> str:
    """An absolute local path, or the URI unchanged (without a trailing slash)."""
    location = str(location)
    return location.rstrip("/") if is_remote(location) else str(Path(location).resolve())


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *(str(p).strip("/") for p in parts)])
    return str(Path(base).joinpath(*parts))


def local_path(location: str) -> Path | None:
    """The local directory a location names, or None for a bucket."""
    return None if is_remote(location) else Path(location)


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it (``bucket/key`` for a bucket)."""
    if not is_remote(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(str(location))
    except (ValueError, OSError) as err:  # pyarrow.lib.ArrowInvalid (a ValueError): a bad URI
        raise StorageError(f"cannot open {location}: {err}") from None


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def modified_ns(location: str) -> int | None:
    """A file's modification time in nanoseconds since the epoch, or None when it does not
    exist (0 when the store keeps none)."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    return info.mtime_ns or 0


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as err:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{location} not found") from None
        raise StorageError(f"cannot read {location}: {err}") from None


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file; a reader sees the old content or the new, never half."""
    local = local_path(location)
    if local is not None:
        replace_atomically(local, lambda tmp: Path(tmp).write_bytes(data))
        return
    fs, path = filesystem(location)
    try:
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    except OSError as err:
        raise StorageError(f"cannot write {location}: {err}") from None


def list_dirs(location: str) -> list[str]:
    """The names of the directories directly under ``location`` ([] when it does not exist)."""
    fs, path = filesystem(location)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as err:
        raise StorageError(f"cannot list {location}: {err}") from None
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def total_size(location: str) -> int:
    """Bytes of all the files under ``location`` (0 when it does not exist)."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def is_dir(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def local_copy(location: str, cache_root: Path | None = None) -> Path:
    """A local directory holding ``location``'s files: the directory itself when it is local,
    else a copy downloaded into ``cache_root`` (default: the temp dir's ``sftune-downloads``).
    The copy is keyed by the URI and by its files' sizes and modification times, so it is
    downloaded once, and again only when the bucket's copy changes (an export overwritten in
    place). A half-finished download is never reused: it is staged beside the copy and renamed
    into place when complete."""
    local = local_path(location)
    if local is not None:
        return local
    cache_root = Path(cache_root or Path(tempfile.gettempdir()) / "sftune-downloads")
    target = cache_root / f"{_content_key(location)}-{location.rstrip('/').rsplit('/', 1)[-1]}"
    if target.is_dir():
        return target
    staging = download_dir(location, cache_root / f".{target.name}.{os.getpid()}.partial")
    try:
        os.replace(staging, target)
    except OSError:  # another process finished the same download first: use theirs
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _content_key(location: str) -> str:
    """A digest of the URI and of what is stored under it (each file's path, size, mtime)."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    listing = sorted((i.path, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    return hashlib.sha256(f"{location}|{listing}".encode()).hexdigest()[:16]


def is_empty_dir(location: str) -> bool:
    """True when nothing is stored under ``location`` (or it does not exist)."""
    fs, path = filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return True
    return not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def download_dir(location: str, target: Path) -> Path:
    """Copy the directory ``location`` to the local ``target`` (replaced if it exists)."""
    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{location} is not a directory")
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pafs.copy_files(path, str(target.resolve()), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return target


def upload_dir(source: Path, location: str) -> str:
    """Copy the local directory ``source`` to ``location`` (files there of the same name are
    overwritten), file by file: a reader may see part of the directory until it ends. Local
    exports that must appear whole go through :mod:`search.artifacts`' staging instead."""
    fs, path = filesystem(location)
    try:
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(Path(source).resolve()), path,
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    except OSError as err:
        raise StorageError(f"cannot upload {source} to {location}: {err}") from None
    return location


def remove(location: str) -> None:
    """Delete a file or a whole directory; a missing one is not an error."""
    fs, path = filesystem(location)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)
