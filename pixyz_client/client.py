"""`Client`: one PiXYZ API server, its processes and jobs, over HTTP (httpx).

    from pixyz_client import Client

    client = Client("http://127.0.0.1:8000", api_key="...")   # or PIXYZ_URL / PIXYZ_API_KEY
    job = client.submit(process="convert_file", file="part.step", params={"extension": "glb"})
    job.wait()
    job.download("part.glb", "out/")

Uploads stream from disk in 64 KiB chunks: a file is never read whole into memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from pixyz_client.errors import Unreachable, raise_for_response
from pixyz_client.job import Job
from pixyz_client.progress import ProgressReader, byte_bar

if TYPE_CHECKING:
    from pixyz_client.batch import Table

DEFAULT_URL = "http://127.0.0.1:8000"

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
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return raise_for_response(response)

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (body not read yet), checked like `request`."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                raise_for_response(response)
                yield response
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
