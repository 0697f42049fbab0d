"""The model store: one immutable artifact file per version, verified before it is loaded."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import uuid
from pathlib import Path

import joblib
from django.conf import settings


class ArtifactError(RuntimeError):
    """An artifact is missing, unreadable or not the file that was recorded."""


def store_dir() -> Path:
    return Path(settings.MODEL_STORE_DIR)


def artifact_write(obj, *, version: int) -> tuple[str, str, int]:
    """Write `obj` as a new file; returns (path relative to the store, sha256, size).

    Temp file, fsync, then os.replace onto a name no other version uses, so a
    reader sees either no file or the whole file, and nothing is overwritten.
    """
    directory = store_dir()
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    data = buffer.getvalue()
    name = f"model-v{version:05d}-{uuid.uuid4().hex[:12]}.joblib"
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
    return name, hashlib.sha256(data).hexdigest(), len(data)


def artifact_load(relative_path: str, sha256: str):
    """Load an artifact after checking its sha256: unpickling runs code, so only the recorded file is loaded."""
    path = store_dir() / relative_path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"Model file {relative_path} cannot be read: {exc.strerror or exc}.") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ArtifactError(
            f"Model file {relative_path} does not match its recorded sha256 "
            f"(expected {sha256[:12]}…, found {digest[:12]}…); it was changed or damaged and is refused."
        )
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # a verified file that still fails to load is a bug or a version skew
        raise ArtifactError(f"Model file {relative_path} could not be loaded: {exc}.") from exc
