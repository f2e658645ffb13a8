"""`Job`: one job on the server: follow it, read its result, fetch its files, cancel it.

A `Job` is a handle (the client and the job's uuid); every method asks the
server. `wait()` follows the job's event stream (`GET /jobs/{uuid}/events`,
Server-Sent Events) until it ends, drawing a bar with its progress and current
step; against a server without that route (404/405) it polls instead. Downloads stream to a `.part` file beside the destination, are
checked against the announced length, and only then take the destination's name.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pixyz_client.errors import (
    JobFailed,
    NotFound,
    PixyzError,
    TooEarly,
    TransferError,
    Unreachable,
    WaitTimeout,
)
from pixyz_client.progress import byte_bar, job_bar

if TYPE_CHECKING:
    import httpx

    from pixyz_client.client import Client

FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
"""Statuses a job never leaves."""

FIRST_POLL = 0.05
"""Seconds before the first status poll; the delay doubles up to `poll`, so short jobs
return within a few tens of milliseconds of ending and long ones cost one request
per `poll` seconds."""

CHUNK_BYTES = 1024 * 1024

PathArg = str | os.PathLike[str]


class Job:
    """A job on the server, known by its `uuid` (and optional `name`, the label it was given)."""

    def __init__(
        self,
        client: Client,
        uuid: str,
        *,
        name: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.uuid = uuid
        self.name = name
        self.submitted = state
        """The short state answered when the job was created (None for `Client.job`)."""
        self._final: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Job({self.uuid!r})"

    @property
    def _path(self) -> str:
        return f"/jobs/{self.uuid}"

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The short state: `uuid, name, status, progress (0-100 or None), error`."""
        return self.client.request("GET", self._path).json()

    def status(self) -> str:
        """SENT, PENDING, RECEIVED, STARTED, RUNNING, RETRY, SUCCESS, FAILURE or REVOKED."""
        return self.state()["status"]

    def details(self) -> dict[str, Any]:
        """The short state plus `process, queue, time_info, steps, retry, result, traceback,
        warnings, children, callback`."""
        details = self.client.request("GET", f"{self._path}/details").json()
        if details["status"] in FINAL:
            self._final = details
        return details

    @property
    def result(self) -> dict[str, Any] | None:
        """What the process returned (None until the job succeeded)."""
        details = self._final or self.details()
        return details.get("result")

    def wait(
        self,
        progress: bool | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
        *,
        raise_on_failure: bool = False,
    ) -> dict[str, Any]:
        """Follow the job until it ends and return its final details.

        The job's event stream tells each change as it happens (one connection, no
        polling); a server without it is polled instead, `poll` being the longest
        pause between requests (seconds). With `progress`, a bar on stderr shows the
        percent done, the status and the current step. `timeout` raises `WaitTimeout`
        (the job keeps running). A job that ends FAILURE or REVOKED is returned like
        any other unless `raise_on_failure`, which raises `JobFailed` carrying the
        job's error.
        """
        show = self.client.show_progress(progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        with job_bar(show) as bar:
            state = self._follow_events(bar, deadline, timeout)
            if state is None:
                state = self._poll(bar, show, poll, deadline, timeout)
        details = state if "steps" in state and state["status"] in FINAL else self.details()
        if raise_on_failure and details["status"] != "SUCCESS":
            raise JobFailed(self.uuid, details["status"], details.get("error"), details)
        return details

    def events(self, since: int = 0, read_timeout: float | None = None):
        """The job's events as `(id, kind, data)`: `status`, `progress`, `step`, then `end`
        (id None) with the final short state, after which the iterator stops. Raises
        `NotFound` for an unknown job, or against a server without the event stream."""
        timeout = None if read_timeout is None else _read_timeout(self.client, read_timeout)
        with self.client.stream(
            "GET", f"{self._path}/events", params={"since": since}, timeout=timeout
        ) as response:
            for event_id, kind, data in _server_sent_events(response):
                yield event_id, kind, data
                if kind == "end":
                    return

    def _follow_events(self, bar, deadline: float | None, timeout: float | None):
        """The final short state by the event stream; None when the server has none."""
        view: dict[str, Any] = {"uuid": self.uuid, "status": "SENT", "progress": None, "steps": []}
        read = None if deadline is None else max(0.1, deadline - time.monotonic())
        if read is not None:
            read = min(read, self.client.timeout)
        try:
            for _, kind, data in self.events(read_timeout=read):
                if kind == "end":
                    return data
                if kind == "status":
                    view["status"] = data["status"]
                elif kind == "progress":
                    view["progress"] = data["progress"]
                elif kind == "step":
                    view["steps"] = [data]
                bar.show_job(view)
                if deadline is not None and time.monotonic() >= deadline:
                    raise _timed_out(self.uuid, timeout, view)
        except NotFound:
            return None  # an older server (or no such job: polling says which)
        except PixyzError as exc:
            if exc.code == 405:
                return None
            if not isinstance(exc, Unreachable):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise _timed_out(self.uuid, timeout, view) from None
            return None  # the stream broke (a proxy cut it): poll the rest of the way
        return None  # the stream ended without `end`

    def _poll(self, bar, show: bool, poll: float, deadline, timeout) -> dict[str, Any]:
        delay = min(FIRST_POLL, poll)
        while True:
            # The bar shows the current step, which only the details carry.
            state = self.details() if show else self.state()
            bar.show_job(state)
            if state["status"] in FINAL:
                return state
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timed_out(self.uuid, timeout, state)
                delay = min(delay, remaining)
            time.sleep(delay)
            delay = min(delay * 2, poll)

    def cancel(self) -> dict[str, Any]:
        """Cancel the job (status REVOKED); `BadRequest` when it had already finished."""
        return self.client.request("DELETE", self._path).json()

    # -- outputs ----------------------------------------------------------------------------

    def outputs(self) -> list[str]:
        """Paths of the files the job wrote, relative to its outputs (may contain `/`)."""
        return self.client.request("GET", f"{self._path}/outputs").json()["outputs"]

    def download(
        self, path: str, dest: PathArg | None = None, *, progress: bool | None = None
    ) -> Path:
        """Save output `path` and return where it went.

        `dest` is a file path, or an existing folder to put it in under its own
        name; default: its name in the current folder. Missing parent folders are made.
        """
        target = _destination(dest, posixpath.basename(path))
        url = f"{self._path}/outputs/{quote(path, safe='/')}"
        with self.client.stream("GET", url) as response:
            _save(response, target, f"Downloading {posixpath.basename(path)}", self._bars(progress))
        return target

    def download_all(
        self,
        dest: PathArg | None = None,
        *,
        extract: bool = False,
        max_wait: float = 60.0,
        progress: bool | None = None,
    ) -> Path:
        """Save every output as one zip (`extract=False`, the default) or as files (`extract=True`).

        The server zips the outputs on the first request and answers 425 until the
        job has ended and the zip is built: this retries, waiting 0.25 s then twice
        as long each time up to the server's `Retry-After` (1 s), for at most
        `max_wait` seconds, then raises `TooEarly`. The zip is checked (every
        member's CRC) before it is kept.

        Without `extract`, `dest` is the zip's path, or a folder to put `<uuid>.zip`
        in (default `./<uuid>.zip`); the zip's path is returned. With `extract`,
        `dest` is the folder the files go in (default `./<uuid>`), the zip is
        deleted once unpacked, and the folder is returned.
        """
        if extract:
            folder = Path(dest) if dest is not None else Path(self.uuid)
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
                archive = self._fetch_archive(Path(scratch) / "outputs.zip", max_wait, progress)
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(folder)  # zipfile drops absolute paths and '..' parts
            return folder
        target = _destination(dest, f"{self.uuid}.zip")
        return self._fetch_archive(target, max_wait, progress)

    def _fetch_archive(self, target: Path, max_wait: float, progress: bool | None) -> Path:
        deadline = time.monotonic() + max_wait
        delay = 0.25
        while True:
            try:
                with self.client.stream("GET", f"{self._path}/outputs/archive") as response:
                    _save(response, target, "Downloading outputs.zip", self._bars(progress))
                break
            except TooEarly as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TooEarly(
                        exc.code,
                        exc.message,
                        f"{exc.details} (still not ready after {max_wait:g} s)",
                        exc.retry_after,
                    ) from exc
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, max(exc.retry_after, 0.25))
        try:
            with zipfile.ZipFile(target) as zf:
                broken = zf.testzip()
        except zipfile.BadZipFile as exc:
            target.unlink()
            raise TransferError(None, "the outputs archive does not open", str(exc)) from exc
        if broken is not None:
            target.unlink()
            raise TransferError(None, "the outputs archive is corrupt", f"bad CRC in {broken}")
        return target

    def _bars(self, progress: bool | None) -> bool:
        return self.client.show_progress(progress)


def _timed_out(uuid: str, timeout: float | None, state: dict[str, Any]) -> WaitTimeout:
    return WaitTimeout(
        None,
        f"job {uuid} did not end within {timeout:g} s",
        f"still {state['status']} at {state.get('progress') or 0}%",
    )


def _read_timeout(client: Client, seconds: float):
    import httpx

    # The server sends a `: ping` every 15 s: a longer silence is a broken stream.
    return httpx.Timeout(client.timeout, connect=min(client.timeout, 10.0), read=seconds)


def _server_sent_events(response: httpx.Response):
    """`(id or None, event, data as JSON)` of each event of a text/event-stream body."""
    event_id, kind, data = None, "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, "message", []
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = int(value) if value.isdigit() else None
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def _destination(dest: PathArg | None, default_name: str) -> Path:
    if dest is None:
        return Path(default_name)
    target = Path(dest)
    names_a_folder = str(dest).endswith(("/", os.sep)) or target.is_dir()
    return target / default_name if names_a_folder else target


def _save(response: httpx.Response, target: Path, label: str, progress: bool) -> int:
    """Stream a response body to `target` through a `.part` file; returns the byte count."""
    announced = response.headers.get("content-length")
    total = int(announced) if announced is not None else None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    written = 0
    try:
        with open(partial, "wb") as out, byte_bar(label, total, progress) as bar:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if total is not None and written != total:
            raise TransferError(
                None, f"download of {target.name} came back short", f"{written} of {total} bytes"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return written
