"""`Client`: one PiXYZ API server, its processes and jobs, over HTTP (httpx).

    from pixyz_client import Client

    client = Client("http://127.0.0.1:8000", api_key="...")   # or PIXYZ_URL / PIXYZ_API_KEY
    job = client.submit(process="convert_file", file="part.step", params={"extension": "glb"})
    job.wait()
    job.download("part.glb", "out/")

Uploads stream from disk: a file is never read whole into memory. Files over
`CHUNKED_UPLOAD_BYTES` skip the multipart form (which Serve buffers whole): PUT
straight to the object store through a presigned URL when the server's storage
offers one (`POST /uploads`, S3), else as a resumable chunked upload (tus,
`/uploads/tus`, `CHUNK_BYTES` per request, resumed after a dropped connection);
the job is then created from the upload's `file_url`. Smaller files, and every
file sent to a server with neither route, go in the multipart `POST /jobs` itself.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from pixyz_client.errors import (
    Conflict,
    PixyzError,
    ServerError,
    TransferError,
    Unreachable,
    raise_for_response,
)
from pixyz_client.job import Job
from pixyz_client.progress import ProgressReader, byte_bar

if TYPE_CHECKING:
    from pixyz_client.batch import Table

DEFAULT_URL = "http://127.0.0.1:8000"

CHUNKED_UPLOAD_BYTES = 64 * 1024 * 1024
"""Files larger than this are sent as a chunked upload (when the server offers it)."""
CHUNK_BYTES = 2 * 1024 * 1024
"""Bytes per chunk of a chunked upload (the server takes up to 8 MiB). Serve's proxy and
replica each hold a few chunks' worth of buffers while a file goes up (measured for a
512 MiB file: +69 MiB of RSS with 2 MiB chunks, +114 with 4, +189 with 8), and each
chunk costs a request (≈ 40 ms), so 2 MiB keeps the service's memory flat at ≈ 25 MiB/s."""
CHUNK_RETRIES = 5
TUS = {"Tus-Resumable": "1.0.0"}

FileArg = str | os.PathLike[str] | IO[bytes]
"""An input: a path on disk, or a binary file opened by the caller."""


class Client:
    """A connection to one server.

    `url` and `api_key` default to the `PIXYZ_URL` (else `http://127.0.0.1:8000`) and
    `PIXYZ_API_KEY` environment variables, read when the client is made. `timeout`
    bounds each network operation (connect, each read or write), not a whole upload.
    `progress` is the default for every method's own `progress` argument: bars on
    stderr for uploads, jobs and downloads, drawn when tqdm is installed.
    Use it as a context manager, or call `close()`, to release its connections.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        progress: bool = True,
    ) -> None:
        self.url = (url or os.environ.get("PIXYZ_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("PIXYZ_API_KEY")
        self.progress = progress
        self.timeout = timeout
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
        )

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise the server's error as a `PixyzError` subclass."""
        return raise_for_response(self._unchecked(method, path, **kwargs))

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (body not read yet), checked like `request`."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                raise_for_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unchecked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """`request` without turning error answers into exceptions (the caller reads them).

        A GET or HEAD on a kept-alive connection that the server closed unanswered (the
        ingress reloading, e.g. HAProxy when a replica is replaced) is sent once more.
        """
        try:
            try:
                return self._http.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                if method.upper() not in ("GET", "HEAD"):
                    raise
                return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(None, f"cannot reach {self.url}", reason)

    def show_progress(self, progress: bool | None) -> bool:
        """A method's `progress` argument, the client's default when None."""
        return self.progress if progress is None else progress

    # -- processes --------------------------------------------------------------------------

    def processes(self) -> list[str]:
        """Names of the processes jobs can run."""
        return self.request("GET", "/processes").json()["processes"]

    def doc(self, name: str) -> str:
        """A process's documentation: what it does, its params and its result."""
        return self.request("GET", f"/processes/{name}").json()["doc"]

    def formats(self) -> dict[str, Any]:
        """What the server reads and writes: `{"readable": [...], "writable": [...], "formats": [...]}`."""
        return self.request("GET", "/formats").json()

    def params_schema(self, name: str) -> dict | None:
        """The JSON Schema of a process's `params` (None: it takes any JSON object)."""
        return self.request("GET", f"/processes/{name}").json().get("params_schema")

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        """The short state of every job: `uuid, name, status, progress, error`."""
        return self.request("GET", "/jobs").json()["jobs"]

    def job(self, uuid: str) -> Job:
        """A handle on an existing job (no request is made)."""
        return Job(self, uuid)

    def submit(
        self,
        process: str = "custom",
        *,
        file: FileArg | None = None,
        script: str | os.PathLike[str] | bytes | None = None,
        params: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        name: str | None = None,
        progress: bool | None = None,
    ) -> Job:
        """Create a job and return its `Job` (status SENT).

        `file` is the input model (a path, or an open binary file), streamed from disk.
        `script` is the Python file of a `custom` job: a path, or its source as bytes.
        `params` go to the process as they are; `config` takes `entrypoint`, `queue`
        (cpu, gpu, gpuhigh), `time_limit` (seconds) and `callback_url`, None meaning
        the server's default. `name` is a free label. Raises `BadRequest` for an
        unknown process or bad params, `Forbidden` when custom scripts are disabled.
        """
        data = {
            "process": process,
            "params": json.dumps(params or {}),
            "config": json.dumps(config or {}),
        }
        if name:
            data["name"] = name
        with _opened(file) as upload:
            files: dict[str, tuple[str, Any, str]] = {}
            bar = None
            if upload is not None:
                size = _size(upload)
                bar = byte_bar(f"Uploading {_filename(upload)}", size, self.show_progress(progress))
                file_url = None
                if size is not None and size > CHUNKED_UPLOAD_BYTES:
                    file_url = self._upload_direct(upload, size, bar)
                    if file_url is None:
                        file_url = self._upload_chunked(upload, size, bar)
                if file_url is not None:
                    data["file_url"] = file_url
                else:
                    reader = ProgressReader(upload, bar)
                    files["file"] = (_filename(upload), reader, "application/octet-stream")
            if script is not None:
                files["script"] = _script_part(script)
            try:
                state = self.request("POST", "/jobs", data=data, files=files or None).json()
            finally:
                if bar is not None:
                    bar.close()
        return Job(self, state["uuid"], name=state.get("name"), state=state)

    def upload(self, file: FileArg, *, progress: bool | None = None) -> str | None:
        """Send a file as a resumable chunked upload; returns its `file_url` for `POST /jobs`
        (None when the server has no chunked uploads). `submit` does this for large files."""
        with _opened(file) as upload:
            size = _size(upload)
            if size is None:
                raise ValueError("a chunked upload needs a file whose size is known (seekable)")
            label = f"Uploading {_filename(upload)}"
            with byte_bar(label, size, self.show_progress(progress)) as bar:
                return self._upload_chunked(upload, size, bar)

    def _upload_direct(self, upload: IO[bytes], size: int, bar) -> str | None:
        """PUT to a presigned object-store URL; None when the server offers none."""
        asked = {"filename": _filename(upload), "size": size}
        answer = self._unchecked("POST", "/uploads", json=asked)
        if answer.status_code in (404, 405) or (
            answer.status_code == 400 and "cannot take direct uploads" in answer.text
        ):
            return None  # an older server, or storage without presigned URLs (local)
        ticket = raise_for_response(answer).json()
        upload.seek(0)
        reader = ProgressReader(upload, bar)
        body = iter(lambda: reader.read(CHUNK_BYTES), b"")
        try:  # a plain request: the store's signature covers its headers, not our key
            put = httpx.put(
                ticket["url"],
                content=body,
                headers={"Content-Length": str(size)},
                timeout=self._http.timeout,
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if put.status_code >= 300:
            raise TransferError(None, "the object store refused the upload", put.text[:300])
        return ticket["file_url"]

    def _upload_chunked(self, upload: IO[bytes], size: int, bar) -> str | None:
        name = base64.b64encode(_filename(upload).encode()).decode()
        headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"}
        created = self._unchecked("POST", "/uploads/tus", headers=headers)
        if created.status_code in (404, 405):
            return None  # an older server: the multipart path
        # Location is absolute, or a path on this server (which may sit under a prefix).
        location = str(httpx.URL(self.url).join(raise_for_response(created).headers["location"]))
        offset, failures = 0, 0
        while True:
            upload.seek(offset)
            chunk = upload.read(CHUNK_BYTES) if offset < size else b""
            headers = {
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            try:
                response = self.request("PATCH", location, content=chunk, headers=headers)
            except (Unreachable, ServerError, Conflict) as exc:
                failures += 1
                if failures > CHUNK_RETRIES:
                    raise
                time.sleep(min(0.5 * 2**failures, 8.0))
                offset, file_url = self._uploaded(location, exc)  # resume where the server is
                if file_url is not None:
                    return file_url
                bar.reset()
                bar.update(offset)
                continue
            failures = 0
            bar.update(int(response.headers["upload-offset"]) - offset)
            offset = int(response.headers["upload-offset"])
            if offset >= size:
                return response.headers["upload-file-url"]

    def _uploaded(self, location: str, cause: Exception) -> tuple[int, str | None]:
        """(bytes the server has, the file_url once complete), after a failed chunk."""
        try:
            head = self.request("HEAD", location, headers=TUS)
        except PixyzError:
            raise cause from None
        return int(head.headers["upload-offset"]), head.headers.get("upload-file-url")

    def batch(
        self,
        files: Sequence[FileArg],
        process: str,
        params: dict[str, Any] | None = None,
        *,
        config: dict[str, Any] | None = None,
        concurrency: int = 4,
        timeout: float | None = None,
        progress: bool | None = None,
    ) -> Table:
        """Run `process` on each file, `concurrency` jobs at a time, and tabulate the outcomes.

        One row per file, in the order given: `file, uuid, status, error, seconds,
        result`. A pandas DataFrame when pandas is importable, else a list of dicts.
        A file that could not be submitted has status None and the reason in `error`;
        nothing is raised for one file's failure. See `pixyz_client.batch`.
        """
        from pixyz_client.batch import run_batch

        return run_batch(
            self,
            files,
            process,
            params,
            config=config,
            concurrency=concurrency,
            timeout=timeout,
            progress=self.show_progress(progress),
        )


@contextmanager
def _opened(file: FileArg | None) -> Iterator[IO[bytes] | None]:
    """The input as an open binary file: paths are opened here (and closed), objects kept."""
    if file is None or hasattr(file, "read"):
        yield file  # type: ignore[misc]
        return
    with open(file, "rb") as handle:  # type: ignore[arg-type]
        yield handle


def _filename(file: IO[bytes]) -> str:
    return os.path.basename(str(getattr(file, "name", "") or "upload.bin"))


def _size(file: IO[bytes]) -> int | None:
    # httpx sends a file from its start (it seeks to 0), so its whole size is what goes.
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        pass
    try:
        position = file.tell()
        size = file.seek(0, os.SEEK_END)
        file.seek(position)
        return size
    except (AttributeError, OSError, ValueError):
        return None


def _script_part(script: str | os.PathLike[str] | bytes) -> tuple[str, bytes, str]:
    # A script is small (the server caps it at 1 MiB): read it whole.
    if isinstance(script, bytes):
        return ("script.py", script, "text/x-python")
    path = Path(script)
    return (path.name, path.read_bytes(), "text/x-python")
