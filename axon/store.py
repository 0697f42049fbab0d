"""The model store: one immutable artifact per version, kept in the database, cached on local disk.

The database copy is what every app host and worker shares: a model trained by a
worker on any host is usable on all of them. The local file is only a cache; it is
checked against the recorded sha256 before every load, and a cache that is missing
or does not match is fetched again from the database, never loaded.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import logging
import os
import pickle
import sys
import tempfile
import zlib
from pathlib import Path

import joblib
from django.conf import settings

logger = logging.getLogger(__name__)


# The artifact format: this line, then the object pickled (protocol 5) and zlib-compressed. Files
# without it were written by joblib.dump before; they still load. The C pickler wrote a
# 1,000-host model in 0.4 s where joblib's Python-level one took 3.6 s (and loads it 7 times
# faster, which is what every app host does when a version goes live).
MAGIC = b"voltaxe-model pickle5+zlib\n"


# Models pickled before the detector's pure core moved to axon/detector name its classes by the old
# modules; they load as the same classes under the new names.
MOVED = {f"axon.{m}": f"axon.detector.{m}" for m in ("features", "training", "norms", "lineage", "approved", "risk", "severity")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module_name, global_name, /):
        return super().find_class(MOVED.get(module_name, module_name), global_name)


def _joblib_load(data: bytes):
    # joblib builds its own unpickler: the old names are made importable instead (only older files get here).
    for old, new in MOVED.items():
        sys.modules.setdefault(old, importlib.import_module(new))
    return joblib.load(io.BytesIO(data))


class ArtifactError(RuntimeError):
    """An artifact is missing, unreadable or not the file that was recorded."""


def store_dir() -> Path:
    return Path(settings.MODEL_STORE_DIR)


def artifact_write(obj, *, version: int) -> tuple[str, str, int, bytes]:
    """Serialize `obj` and cache it locally; returns (cache file name, sha256, size, bytes for the database).

    The name carries the version and the digest, so no two versions share a file and
    nothing is overwritten.
    """
    data = MAGIC + zlib.compress(pickle.dumps(obj, protocol=5), 3)
    sha256 = hashlib.sha256(data).hexdigest()
    name = f"model-v{version:05d}-{sha256[:12]}.model"
    _cache_write(name, data)
    return name, sha256, len(data), data


def _cache_write(name: str, data: bytes) -> None:
    """Temp file, fsync, then os.replace: a reader sees either no file or the whole file."""
    directory = store_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def artifact_load(relative_path: str, sha256: str, *, version: int | None = None):
    """Load an artifact after checking its sha256: unpickling runs code, so only the recorded bytes are loaded.

    The local cache is used when it matches; otherwise, with `version`, the database
    copy is fetched, checked the same way and cached again.
    """
    try:
        data = (store_dir() / relative_path).read_bytes()
        problem = "" if hashlib.sha256(data).hexdigest() == sha256 else "does not match its recorded sha256"
    except OSError as exc:
        data, problem = b"", f"cannot be read: {exc.strerror or exc}"
    if problem and version is not None:
        if "sha256" in problem:
            logger.warning("Cached model file %s %s; fetching it again from the database", relative_path, problem)
        data = _database_copy(version, sha256)
        _cache_write(relative_path, data)
    elif problem:
        raise ArtifactError(f"Model file {relative_path} {problem}; it was changed or damaged and is refused."
                            if "sha256" in problem else f"Model file {relative_path} {problem}.")
    try:
        if data.startswith(MAGIC):
            return _Unpickler(io.BytesIO(zlib.decompress(data[len(MAGIC):]))).load()  # its sha256 was checked above
        return _joblib_load(data)
    except Exception as exc:  # verified bytes that still fail to load are a bug or a version skew
        raise ArtifactError(f"Model v{version or '?'} ({relative_path}) could not be loaded: {exc}.") from exc


def _database_copy(version: int, sha256: str) -> bytes:
    from axon.models import ModelArtifact

    data = ModelArtifact.objects.filter(model_version__version=version).values_list("data", flat=True).first()
    if data is None:
        raise ArtifactError(f"Model v{version} is not stored in the database and its cached file is missing.")
    data = bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ArtifactError(
            f"Model v{version} in the database does not match its recorded sha256 "
            f"(expected {sha256[:12]}…, found {digest[:12]}…); it was changed or damaged and is refused."
        )
    return data
