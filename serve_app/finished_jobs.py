"""FinishedJobs: each API replica's bounded cache of finished jobs' short state and details.

A job in SUCCESS, FAILURE or REVOKED does not change, so polls of it need not
reach the JobStore (docs/scaling.md, step 1). Entries are kept by uuid with
their owner, so the route checks ownership on the cached record exactly as it
does on the store's answer. What can still change after the end is handled so:

- details are cached only once `settled` (the store says no callback is still to
  be delivered; the `callback` detail is the one field that changes after the end);
- nothing is cached before the store says its final state is `saved` on storage: a
  SUCCESS held only in memory (storage full) is undone by a store restart, which runs
  the job again;
- a job deleted by retention, or changed after its end, is dropped when the
  store's after-end feed names it (`JobStore.changed_after_end`, long-polled by
  one background thread per replica: one pending call, not one per poll);
- every entry expires after `ttl` seconds anyway, in case the feed missed it
  (the store was replaced between two polls of the feed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from tasks import records

logger = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
TTL_SECONDS = 60.0
FEED_WAIT_SECONDS = 30.0


class FinishedJobs:
    """uuid -> (owner, short state, details or None, expiry); least recently used dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl: float = TTL_SECONDS):
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[str, list] = OrderedDict()
        self._lock = threading.Lock()  # the feed thread drops entries while requests read them
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, job_id: str) -> tuple[str | None, dict, dict | None] | None:
        """(owner, short, details or None) of a cached finished job, or None."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return None
            if entry[3] < time.monotonic():
                del self._entries[job_id]
                return None
            self._entries.move_to_end(job_id)
            self.hits += 1
            return entry[0], entry[1], entry[2]

    def keep_short(self, job_id: str, short: dict) -> None:
        """Remember the store's short answer (with `owner`) if the job has finished."""
        if short.get("status") not in records.TERMINAL or not short.get("saved", True):
            return  # a final state not yet on storage: a store restart would run the job again
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None and entry[1].get("status") == short["status"]:
                entry[1] = short
            else:
                self._entries[job_id] = [short.get("owner"), short, None, self._expiry()]
            self._trim()

    def keep_details(self, job_id: str, details: dict) -> None:
        """Remember the store's details (with `owner` and `settled`) once nothing in them can change."""
        if details.get("status") not in records.TERMINAL or not details.get("settled"):
            return
        if not details.get("saved", True):
            return  # only in the store's memory so far (storage full or failing)
        short = {key: details.get(key) for key in records.SHORT_FIELDS}
        short["owner"] = details.get("owner")
        with self._lock:
            self._entries[job_id] = [details.get("owner"), short, details, self._expiry()]
            self._entries.move_to_end(job_id)
            self._trim()

    def drop(self, job_ids) -> None:
        with self._lock:
            for job_id in job_ids:
                self._entries.pop(job_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _expiry(self) -> float:
        return time.monotonic() + self.ttl

    def _trim(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class AfterEndFeed:
    """A daemon thread following the store's after-end feed and dropping what it names.

    `handle()` returns the current store handle, or None when there is none (the
    thread never creates a store: a store killed on purpose stays dead). It runs
    in its own thread with blocking `ray.get`s, so it works whatever event loop
    (Serve's, a test client's) the requests run on.
    """

    def __init__(self, cache: FinishedJobs, handle: Callable[[], object | None]):
        self.cache = cache
        self.handle = handle
        self.epoch: str | None = None
        self.seq = 0
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="after-end-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        import ray

        while not self.stopped.is_set():
            if not ray.is_initialized():
                return  # Ray was shut down (never start a new cluster from here)
            handle = self.handle()
            if handle is None:
                self.stopped.wait(1.0)
                continue
            try:
                answer = ray.get(
                    handle.changed_after_end.remote(self.epoch, self.seq, FEED_WAIT_SECONDS),
                    timeout=FEED_WAIT_SECONDS + 30,
                )
            except SystemExit:
                return  # Ray is shutting down this process's worker
            except Exception as exc:  # a dead or replaced store: the TTL covers the gap
                logger.debug("after-end feed: %s; retrying", exc)
                self.stopped.wait(1.0)
                continue
            if answer["reset"]:
                self.cache.clear()  # it missed some: nothing cached can be trusted
            self.cache.drop(answer["jobs"])
            self.epoch, self.seq = answer["epoch"], answer["seq"]
