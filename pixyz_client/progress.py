"""Progress bars on stderr for uploads, jobs and downloads.

Bars are drawn with tqdm when it is installed and quietly skipped when it is
not (or when the caller turns them off), so the client never needs it. The
job bar shows the job's progress in percent and its current step, the `info`
of the last step the process reported.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

STEP_WIDTH = 60
"""Characters of the current step shown beside the job bar."""


class NullBar:
    """Stands in for a bar when none is drawn."""

    def update(self, n: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def show_job(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TqdmBar(NullBar):
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        self._bar.update(n)

    def reset(self) -> None:
        self._bar.reset()

    def show_job(self, state: dict[str, Any]) -> None:
        self._bar.n = max(0, min(100, int(state.get("progress") or 0)))
        self._bar.set_description_str(f"Job {state['uuid'][:8]} {state['status']}", refresh=False)
        steps = state.get("steps") or []
        info = str(steps[-1].get("info", "")) if steps else ""
        if len(info) > STEP_WIDTH:
            info = info[: STEP_WIDTH - 1] + "…"
        self._bar.set_postfix_str(info, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _tqdm(enabled: bool, **kwargs: Any) -> NullBar:
    if not enabled:
        return NullBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return NullBar()
    return _TqdmBar(tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs))


def byte_bar(label: str, total: int | None, enabled: bool) -> NullBar:
    """A bar counting bytes (upload or download) towards `total` (None when unknown)."""
    return _tqdm(enabled, desc=label, total=total, unit="B", unit_scale=True, unit_divisor=1024)


def job_bar(enabled: bool) -> NullBar:
    """A bar for a job: percent done, status and current step (fed by `show_job(details)`)."""
    return _tqdm(
        enabled,
        total=100,
        bar_format="{desc} {percentage:3.0f}%|{bar:24}| {elapsed} {postfix}",
    )


def count_bar(label: str, total: int, enabled: bool) -> NullBar:
    """A bar counting finished items, for batches."""
    return _tqdm(enabled, desc=label, total=total, unit="file")


class ProgressReader:
    """A binary file that advances a bar as it is read, for streamed uploads.

    It keeps `fileno`, `seek` and `tell` so httpx can size the upload (Content-Length)
    without reading it, and rewinds the bar if the body is sent again.
    """

    def __init__(self, file: IO[bytes], bar: NullBar) -> None:
        self._file, self._bar = file, bar
        self.name = getattr(file, "name", "upload")

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._bar.update(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        if position == 0:
            self._bar.reset()
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()
