"""Retention, without Ray: only finished jobs older than the cutoff go, with all their files."""

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.retention import Retention
from tasks.settings import Settings
from tasks.storage import Storage

from conftest import job_record, on_disk


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


async def job_on_disk(checkpoints: JobCheckpoints, status: str, requested: str) -> str:
    record = job_record(status=status)
    record["time_info"]["request"] = requested
    checkpoints.storage.write_bytes_atomic(
        checkpoints.storage.job_path(record["uuid"], "outputs", "output.glb"), b"glTF"
    )
    return await on_disk(checkpoints, record)


def retention(tmp_path, **overrides):
    settings = Settings(storage=str(tmp_path / "storage"), **overrides)
    storage = Storage(settings.storage)
    checkpoints = JobCheckpoints(storage)
    return Retention(settings, storage, checkpoints), checkpoints


def indexed_on_disk(tmp_path) -> set[str]:
    index = json.loads((tmp_path / "storage" / "state" / "index.json").read_text())
    return {entry["uuid"] for entry in index["jobs"]}


def test_the_sweep_deletes_only_finished_jobs_requested_before_the_cutoff(tmp_path):
    sweeper, checkpoints = retention(tmp_path)

    async def scenario():
        jobs = {
            "old success": await job_on_disk(checkpoints, records.SUCCESS, "2020-01-01T00:00:00"),
            "old failure": await job_on_disk(checkpoints, records.FAILURE, "2020-06-01T00:00:00"),
            "old revoked": await job_on_disk(checkpoints, records.REVOKED, "2020-07-01T00:00:00"),
            "old running": await job_on_disk(checkpoints, records.RUNNING, "2020-01-01T00:00:00"),
            "old pending": await job_on_disk(checkpoints, records.PENDING, "2020-01-01T00:00:00"),
            "new success": await job_on_disk(checkpoints, records.SUCCESS, "2024-01-01T00:00:00"),
        }
        return jobs, await sweeper.sweep(requested_before="2021-01-01")

    jobs, deleted = asyncio.run(scenario())
    assert deleted == 3
    kept = {jobs[name] for name in ("old running", "old pending", "new success")}
    assert set(checkpoints.index) == kept
    assert indexed_on_disk(tmp_path) == kept
    for name, job_id in jobs.items():
        assert (tmp_path / "storage" / "jobs" / job_id).exists() == (job_id in kept), name


def test_without_a_cutoff_the_sweep_uses_the_retention_age(tmp_path):
    sweeper, checkpoints = retention(tmp_path, retention_days=1)

    async def scenario():
        two_days = await job_on_disk(checkpoints, records.SUCCESS, ago(days=2))
        one_hour = await job_on_disk(checkpoints, records.SUCCESS, ago(hours=1))
        return two_days, one_hour, await sweeper.sweep(), await sweeper.sweep()

    two_days, one_hour, first, second = asyncio.run(scenario())
    assert (first, second) == (1, 0)
    assert list(checkpoints.index) == [one_hour]
    assert not (tmp_path / "storage" / "jobs" / two_days).exists()


def test_unclaimed_uploads_expire_after_the_configured_hours(tmp_path):
    sweeper, checkpoints = retention(tmp_path, upload_expiry_hours=24)
    storage = checkpoints.storage
    old, fresh = storage.path("uploads", "old", "big.step"), storage.path("uploads", "new", "a.stl")
    for path in (old, fresh):
        storage.write_bytes_atomic(path, b"solid")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))

    deleted = asyncio.run(sweeper.expire_uploads())
    assert deleted == 1
    assert not storage.exists(old) and storage.exists(fresh)
