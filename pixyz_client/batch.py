"""`Client.batch`: one process over many files, a few jobs at a time, as a table of outcomes.

Each file is submitted and waited for in a worker thread (the HTTP client is
shared: httpx's connection pool is thread-safe); at most `concurrency` jobs are
in flight, so a batch of a thousand files does not flood the server's queue.
A file's failure is a row, never an exception: the table says what happened
to every file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from pixyz_client.errors import PixyzError
from pixyz_client.progress import count_bar

if TYPE_CHECKING:
    from pixyz_client.client import Client, FileArg

COLUMNS = ("file", "uuid", "status", "error", "seconds", "result")
"""One row per file: its path, its job, the final status (None when no job was made or
followed to its end), the job's or the client's error, seconds from submit to end,
and the process's result."""

Table = Any
"""A pandas DataFrame with `COLUMNS`, or a list of dicts with those keys without pandas."""


def run_batch(
    client: Client,
    files: Sequence[FileArg],
    process: str,
    params: dict[str, Any] | None = None,
    *,
    config: dict[str, Any] | None = None,
    concurrency: int = 4,
    timeout: float | None = None,
    progress: bool = True,
) -> Table:
    """Submit `process` for every file, wait for each job, and return the table of outcomes.

    `concurrency` is how many jobs run at once (4 suits a small cluster; the server
    queues the rest anyway, so more mostly costs polling). `timeout` bounds each
    job's wait; a job still running then is left running, its row says so.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    rows: list[dict[str, Any] | None] = [None] * len(files)
    with (
        count_bar(f"Batch {process}", len(files), progress) as bar,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pixyz-batch") as pool,
    ):
        futures = {
            pool.submit(_run_one, client, file, process, params, config, timeout): index
            for index, file in enumerate(files)
        }
        for future in as_completed(futures):
            row = future.result()
            rows[futures[future]] = row
            bar.update(1)
    return as_table([row for row in rows if row is not None])


def _run_one(
    client: Client,
    file: FileArg,
    process: str,
    params: dict[str, Any] | None,
    config: dict[str, Any] | None,
    timeout: float | None,
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["file"] = (
        os.fspath(file) if isinstance(file, str | os.PathLike) else getattr(file, "name", None)
    )
    start = time.monotonic()
    try:
        job = client.submit(process, file=file, params=params, config=config, progress=False)
        row["uuid"] = job.uuid
        details = job.wait(progress=False, timeout=timeout)
        row.update(
            status=details["status"], error=details.get("error"), result=details.get("result")
        )
    except (PixyzError, OSError) as exc:
        # A missing file, a refused submit, a lost connection: this file's row says why.
        row["error"] = str(exc)
    row["seconds"] = round(time.monotonic() - start, 3)
    return row


def as_table(rows: list[dict[str, Any]]) -> Table:
    """The rows as a pandas DataFrame when pandas is importable, else as they are."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=list(COLUMNS))
