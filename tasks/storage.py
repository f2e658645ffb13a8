"""Where job files and job state live: one fsspec filesystem under one root URL.

Layout under the root (the same on a local folder, S3 or any fsspec store)::

    jobs/<uuid>/inputs/<file>        what the client uploaded
    jobs/<uuid>/outputs/<path>       what the process wrote
    jobs/<uuid>/archive.zip          all outputs, built once on first request
    jobs/<uuid>/state.json           the job record (JobStore checkpoint)
    state/index.json                 short state of every job (fast reload)

Every write that a reader could observe half-done is atomic: local files are
written beside their target and renamed; object stores publish an object only
when its upload completes.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import time
import uuid as uuid_lib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
MERGE_PART_BYTES = 5 * 1024 * 1024  # S3's smallest multipart part (all but the last)
STAGING_BLOCK_BYTES = 8 * 1024 * 1024


class StorageError(Exception):
    """The job storage refused a write or a read: one readable line naming the storage.

    `full` says it was for lack of space (the API answers 507), otherwise the
    store failed (503). Raised by the API and the JobStore instead of a raw OSError.
    """

    def __init__(self, message: str, *, full: bool = False):
        super().__init__(message)
        self.full = full


class Storage:
    """Job files and state under one fsspec root. Picklable: Ray tasks receive it."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.root_url = root
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(root, **self.storage_options)
        self.root = self.root.rstrip("/")
        self.is_local = "file" in _protocols(self.fs)
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)

    def __reduce__(self):
        return (Storage, (self.root_url, self.storage_options))

    # -- paths ----------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def job_path(self, job_id: str, *parts: str) -> str:
        return self.path("jobs", job_id, *parts)

    def index_path(self) -> str:
        return self.path("state", "index.json")

    def failure(self, exc: OSError, doing: str) -> StorageError:
        """`exc`, raised while `doing` something, as the one line a client or a job can read."""
        if getattr(exc, "errno", None) in NO_SPACE:
            return StorageError(
                f"storage {self.root_url} is full ({exc.strerror or 'no space left'}) while "
                f"{doing}; free space there (or ask the operator to) and try again",
                full=True,
            )
        reason = exc.strerror or str(exc) or type(exc).__name__
        return StorageError(f"storage {self.root_url} failed while {doing}: {reason}"[:500])

    # -- small files ------------------------------------------------------------

    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        """Write `data` so that readers see the old file or the new one, never a mix."""
        if self.is_local:
            _replace_local(path, lambda tmp: Path(tmp).write_bytes(data))
        else:
            self.fs.pipe_file(path, data)

    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as f:
            return json.load(f)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def list_job_ids(self) -> list[str]:
        """Every job folder in storage (a scan: used only when reloading state)."""
        base = self.path("jobs")
        if not self.fs.exists(base):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(base, detail=False))

    # -- streams ----------------------------------------------------------------

    def open_write(self, path: str) -> IO[bytes]:
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return self.fs.open(path, "wb")

    def iter_chunks(self, path: str, chunk_size: int) -> Iterator[bytes]:
        with self.fs.open(path, "rb", block_size=chunk_size) as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def delete(self, path: str, recursive: bool = False) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=recursive)

    def move(self, source: str, target: str) -> None:
        """Rename an object (local: making the target's folder first)."""
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        self.fs.mv(source, target)

    def put_file(self, local_path: str | Path, path: str) -> None:
        """Upload one local file (atomic on object stores; local: copy then rename)."""
        if self.is_local:
            _replace_local(path, lambda tmp: self.fs.put_file(str(local_path), tmp))
        else:
            self.fs.put_file(str(local_path), path)

    def get_tree(self, path: str, local_dir: str | Path) -> list[Path]:
        """Download every file under `path` into `local_dir`, keeping relative paths."""
        local_dir = Path(local_dir)
        fetched = []
        if not self.fs.exists(path):
            return fetched
        for remote in self.fs.find(path):
            rel = posixpath.relpath(remote, path)
            target = local_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(target))
            fetched.append(target)
        return fetched

    # -- direct uploads ---------------------------------------------------------

    def can_presign(self) -> bool:
        return "s3" in _protocols(self.fs)

    def presign_put(self, path: str, size: int, expires: int = 3600) -> str:
        """A URL a client can PUT the object to without passing through the API; the
        signature covers `Content-Length`, so the store refuses a body of another size."""
        return self.fs.url(path, expires=expires, client_method="put_object", ContentLength=size)

    # -- chunked uploads (tus, `serve_app/routers/tus.py`) ------------------------------
    # A staging folder per upload: local storage appends to one `data` file; object
    # stores keep each chunk as a `part-<offset>` object and join them at the end:
    # S3 by a server-side multipart copy when every part but the last is ≥ 5 MiB,
    # else (and on other stores) by copying them into the target a block at a time.

    def staged_size(self, folder: str) -> int:
        """Bytes received so far by the chunked upload staged in `folder`."""
        if self.is_local:
            data = posixpath.join(folder, "data")
            return os.path.getsize(data) if os.path.exists(data) else 0
        found = self.fs.find(folder, detail=True) if self.fs.exists(folder) else {}
        return sum(
            int(info["size"])
            for path, info in found.items()
            if posixpath.basename(path).startswith("part-")
        )

    def stage_chunk(self, folder: str, offset: int, data: bytes | bytearray) -> None:
        """Write `data` at `offset` of the staged upload (the caller checked the offset)."""
        if self.is_local:
            path = posixpath.join(folder, "data")
            os.makedirs(folder, exist_ok=True)
            with open(path, "r+b" if os.path.exists(path) else "wb") as f:
                f.seek(offset)
                f.write(data)
                f.truncate()
        else:
            self.fs.pipe_file(posixpath.join(folder, f"part-{offset:020d}"), bytes(data))

    def finish_staged(self, folder: str, target: str) -> None:
        """Publish the staged upload as one object at `target` and drop its chunks."""
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            data = posixpath.join(folder, "data")
            if not os.path.exists(data):  # an empty file: no chunk was ever sent
                Path(data).touch()
            os.replace(data, target)
            return
        found = self.fs.find(folder, detail=True)
        parts = sorted(p for p in found if posixpath.basename(p).startswith("part-"))
        if len(parts) == 1:
            self.fs.mv(parts[0], target)
        elif not parts:
            self.fs.pipe_file(target, b"")
        elif hasattr(self.fs, "merge") and all(
            int(found[p]["size"]) >= MERGE_PART_BYTES for p in parts[:-1]
        ):
            self.fs.merge(target, parts)  # S3: a server-side multipart copy
        else:  # copied through here, a block at a time
            with self.fs.open(target, "wb", block_size=STAGING_BLOCK_BYTES) as out:
                for part in parts:
                    with self.fs.open(part, "rb", block_size=STAGING_BLOCK_BYTES) as f:
                        while block := f.read(STAGING_BLOCK_BYTES):
                            out.write(block)
        if len(parts) > 1:
            self.fs.rm(parts)

    def uploads_older_than(self, seconds: float) -> list[str]:
        """Objects under `uploads/` (presigned uploads no job claimed) older than `seconds`."""
        base = self.path("uploads")
        if not self.fs.exists(base):
            return []
        cutoff = time.time() - seconds
        old = []
        for path, info in self.fs.find(base, detail=True).items():
            modified = info.get("LastModified") or info.get("mtime") or info.get("created")
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else modified
            if stamp is not None and float(stamp) <= cutoff:
                old.append(path)
        return old


def _replace_local(path: str, write) -> None:
    """`write(tmp)` a file beside `path`, then rename it over `path`: readers see the old file
    or the new one. A failed write removes its half-written copy (a full disk must not fill up
    with them)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid_lib.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # never written, or already gone: nothing is left behind either way
        raise


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
