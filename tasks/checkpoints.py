"""Job records in memory and in storage: the JobStore's persistence.

Every change is written through before the caller is answered: the job's
`state.json` (atomic; concurrent changes to one job coalesce into the newest
write) and, for new jobs, the compact `state/index.json` (short state of every
job, so a restart reloads thousands of jobs from one file). Other index
changes are flushed within half a second; on reload the per-job files of
unfinished jobs win over the index, so a lagging index loses nothing.

The index on disk only ever says what the jobs' own `state.json` files say
(each entry is taken from the last record that reached disk), so it can lag
behind them but never run ahead: after a restart the list, the short status
and the details agree. A write that fails (a full disk) leaves the change in
memory and marked unsaved; `flush_forever` writes it once storage takes
writes again, and until then a restart resumes the job from what is on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from tasks import records
from tasks.storage import Storage

logger = logging.getLogger(__name__)

INDEX_FLUSH_SECONDS = 0.5


class JobCheckpoints:
    def __init__(self, storage: Storage):
        self.storage = storage
        self.jobs: dict[str, dict] = {}  # full records; finished jobs are loaded on demand
        self.index: dict[str, dict] = {}  # uuid -> index entry, in submission order
        self._durable: dict[str, dict] = {}  # uuid -> index entry of the record last on disk
        self._locks: dict[str, asyncio.Lock] = {}
        self._versions: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self._index_gen = 0  # changes of `_durable`, what the index on disk holds
        self._index_written = 0
        self._index_lock: asyncio.Lock | None = None
        self._view_gen = 0  # changes of `index`, what the API lists
        self._list_cache: tuple[int, bytes] | None = None
        self._failing: set[str] = set()  # jobs whose last write failed (logged once each)
        # Told of every change and deletion (the store's JobEvents): (job id, record) / (job id).
        self.on_change: Callable[[str, dict], None] | None = None
        self.on_forget: Callable[[str], None] | None = None

    # -- reload -----------------------------------------------------------------------

    def load(self) -> list[str]:
        """Read the index (or rebuild it) and the records of unfinished jobs; return their ids."""
        entries = self._read_index()
        if entries is None:
            entries = self._rebuild_index()
        for entry in entries:
            self.index[entry["uuid"]] = entry
        unfinished = []
        for job_id, entry in self.index.items():
            if entry["status"] in records.TERMINAL:
                continue
            record = self._read_record(job_id)
            if record is None:
                continue
            self.jobs[job_id] = record
            if entry != records.index_entry(record):
                self.index[job_id] = records.index_entry(record)
                self._index_gen += 1  # the index lagged behind the job's own state
            if record["status"] not in records.TERMINAL:
                unfinished.append(job_id)
        self._durable = dict(self.index)
        logger.info("reloaded %d jobs, %d unfinished", len(self.index), len(unfinished))
        return unfinished

    def _read_index(self) -> list[dict] | None:
        path = self.storage.index_path()
        if not self.storage.exists(path):
            return None
        try:
            return self.storage.read_json(path)["jobs"]
        except (ValueError, KeyError) as exc:
            logger.error(
                "job index %s is unreadable (%s); rebuilding it from the job folders", path, exc
            )
            return None

    def _rebuild_index(self) -> list[dict]:
        """Scan every job folder (first start, or a lost index): slow on big stores, done once."""
        entries = []
        for job_id in self.storage.list_job_ids():
            # A folder without state.json is an upload still arriving or a refused job.
            if not self.storage.exists(self.storage.job_path(job_id, "state.json")):
                continue
            record = self._read_record(job_id)
            if record is not None:
                entries.append(records.index_entry(record))
        entries.sort(key=lambda e: e["request"])
        if entries:
            logger.warning("rebuilt the job index from %d job folders", len(entries))
            self._index_gen = 1  # written by the flusher
        return entries

    def _read_record(self, job_id: str) -> dict | None:
        path = self.storage.job_path(job_id, "state.json")
        try:
            return records.checked(self.storage.read_json(path))
        except FileNotFoundError:
            logger.error("job %s has no state file (%s); it is skipped", job_id, path)
        except ValueError as exc:
            logger.error("job %s has an unreadable state file (%s); it is skipped", job_id, exc)
        return None

    # -- writes -----------------------------------------------------------------------

    def add(self, record: dict) -> None:
        """A new job: listed (in memory and in the index) once `persist` has written it."""
        self.jobs[record["uuid"]] = record
        self._versions[record["uuid"]] = 1
        if self.on_change is not None:
            self.on_change(record["uuid"], record)

    def changed(self, job_id: str) -> None:
        """Note that the record changed (call `persist` to write it)."""
        self._versions[job_id] = self._versions.get(job_id, 0) + 1
        if self.on_change is not None:
            self.on_change(job_id, self.jobs[job_id])
        entry = records.index_entry(self.jobs[job_id])
        if job_id in self.index and self.index[job_id] != entry:
            self.index[job_id] = entry
            self._view_gen += 1

    async def persist(self, job_id: str) -> None:
        """Write the job's latest state; returns once a write at least this new is done.

        Raises the storage's OSError when the write fails; the change stays in
        memory, marked unsaved, for `flush_forever` (or the next persist) to write.
        """
        wanted = self._versions.get(job_id, 0)
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            if self._saved.get(job_id, -1) >= wanted or job_id not in self.jobs:
                return
            version = self._versions.get(job_id, 0)
            record = self.jobs[job_id]
            data = json.dumps(record, separators=(",", ":")).encode()
            entry = records.index_entry(record)
            path = self.storage.job_path(job_id, "state.json")
            await asyncio.to_thread(self.storage.write_bytes_atomic, path, data)
            self._saved[job_id] = version
            self._failing.discard(job_id)
            if job_id not in self.jobs:
                return  # discarded while it was being written
            if job_id not in self.index:  # a new job: its state file exists now
                self.index[job_id] = records.index_entry(record)
                self._view_gen += 1
            if self._durable.get(job_id) != entry:
                self._durable[job_id] = entry
                self._index_gen += 1

    async def save(self, job_id: str) -> bool:
        """`persist`, for changes that may wait for storage: a failed write is logged, not
        raised (the record stays unsaved and is written by `flush_forever`). False if it failed."""
        try:
            await self.persist(job_id)
            return True
        except OSError as exc:
            if job_id not in self._failing:
                self._failing.add(job_id)
                logger.error(
                    "job %s: %s; its latest state waits in memory",
                    job_id,
                    self.storage.failure(exc, "saving the job's state"),
                )
            return False

    async def save_change(self, job_id: str) -> bool:
        """`changed` then `save`: what every change to a running or finished job does."""
        self.changed(job_id)
        return await self.save(job_id)

    def is_saved(self, job_id: str) -> bool:
        """Whether the job's latest change is on storage (a restart would find it as it is)."""
        return self._saved.get(job_id, -1) >= self._versions.get(job_id, 0)

    def unsaved(self) -> list[str]:
        """Jobs whose latest change has not reached storage."""
        return [j for j, v in self._versions.items() if self._saved.get(j, -1) < v]

    async def write_index(self) -> None:
        """Write the index if it changed; concurrent callers share one write."""
        wanted = self._index_gen
        if self._index_lock is None:
            self._index_lock = asyncio.Lock()
        async with self._index_lock:
            if self._index_written >= wanted:
                return
            generation = self._index_gen
            jobs = [self._durable[j] for j in self.index if j in self._durable]
            data = json.dumps({"version": 1, "jobs": jobs}).encode()
            await asyncio.to_thread(
                self.storage.write_bytes_atomic, self.storage.index_path(), data
            )
            self._index_written = generation

    async def flush(self) -> bool:
        """Write every unsaved record, then the index. True when everything reached storage."""
        saved = [await self.save(job_id) for job_id in self.unsaved()]
        try:
            await self.write_index()
        except OSError as exc:
            logger.error("%s; will retry", self.storage.failure(exc, "writing the job index"))
            return False
        return all(saved)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(INDEX_FLUSH_SECONDS)
            if self._index_written < self._index_gen or self.unsaved():
                await self.flush()

    async def discard(self, job_id: str) -> None:
        """Undo `add` for a job whose creation failed: nothing of it stays, in memory or storage."""
        self.jobs.pop(job_id, None)
        if self.index.pop(job_id, None) is not None:
            self._view_gen += 1
        if self._durable.pop(job_id, None) is not None:
            self._index_gen += 1
        for table in (self._locks, self._versions, self._saved):
            table.pop(job_id, None)
        self._failing.discard(job_id)
        if self.on_forget is not None:
            self.on_forget(job_id)
        await asyncio.to_thread(self.storage.delete, self.storage.job_path(job_id), True)

    async def forget(self, job_id: str) -> None:
        """Drop a job from memory, the index and storage (retention)."""
        await self.discard(job_id)

    # -- reads ------------------------------------------------------------------------

    async def full_record(self, job_id: str) -> dict | None:
        if job_id in self.jobs:
            return self.jobs[job_id]
        if job_id not in self.index:
            return None
        record = await asyncio.to_thread(self._read_record, job_id)
        if record is not None:
            self.jobs[job_id] = record
        return record

    def list_json(self, owner: str | None = None) -> bytes:
        """`{"jobs": [short state, ...]}` as JSON bytes (all jobs: cached between index changes)."""
        if owner is not None:
            mine = [
                {k: e[k] for k in records.SHORT_FIELDS}
                for e in self.index.values()
                if e.get("owner") == owner
            ]
            return json.dumps({"jobs": mine}).encode()
        if self._list_cache is None or self._list_cache[0] != self._view_gen:
            jobs = [{k: e[k] for k in records.SHORT_FIELDS} for e in self.index.values()]
            self._list_cache = (self._view_gen, json.dumps({"jobs": jobs}).encode())
        return self._list_cache[1]
