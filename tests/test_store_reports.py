"""ProgressReports, without Ray: a runner's events applied in its order, once, to its attempt."""

import asyncio
import json
import uuid

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.job_metrics import JobMetrics
from tasks.metrics import ServiceMetrics
from tasks.reports import ProgressReports
from tasks.storage import Storage

from conftest import job_record, on_disk


class Started:
    """The Supervisor's side of `RECEIVED`: who was told that a runner started."""

    def __init__(self):
        self.calls = []

    def __call__(self, job_id, node_id, pid):
        self.calls.append((job_id, node_id, pid))


async def job_on_disk(checkpoints: JobCheckpoints, attempt: int = 1) -> str:
    return await on_disk(checkpoints, job_record(attempt=attempt, status=records.PENDING))


def setup(tmp_path):
    storage = Storage(str(tmp_path / "storage"))
    checkpoints = JobCheckpoints(storage)
    started = Started()
    reports = ProgressReports(checkpoints.jobs, checkpoints, JobMetrics(ServiceMetrics()), started)
    return storage, checkpoints, reports, started


def test_events_that_arrive_out_of_order_are_applied_in_the_runners_order(tmp_path):
    storage, checkpoints, reports, started = setup(tmp_path)

    async def scenario():
        job_id = await job_on_disk(checkpoints)
        received = {"status": records.RECEIVED, "node_id": "node-1", "pid": 4242}
        events = [
            ("status", received),
            ("step", {"info": "Loaded", "duration": 0.5, "progress": 10}),
            ("progress", {"progress": 20}),
            ("step", {"info": "Saved", "duration": 0.25, "progress": 30}),
        ]
        record = checkpoints.jobs[job_id]
        for seq in (3, 1, 2):
            assert await reports.report(job_id, 1, seq, *events[seq])
        assert record["steps"] == [] and record["status"] == records.PENDING  # all waiting
        assert await reports.report(job_id, 1, 0, *events[0])
        return job_id, record

    job_id, record = asyncio.run(scenario())
    assert [s["info"] for s in record["steps"]] == ["Loaded", "Saved"]
    assert record["progress"] == 30  # arrival order would have left 20
    assert record["status"] == records.RUNNING and record["node"] == "node-1"
    assert record["time_info"]["started"] is not None
    assert started.calls == [(job_id, "node-1", 4242)]
    on_disk = json.loads((tmp_path / "storage" / "jobs" / job_id / "state.json").read_text())
    assert on_disk["steps"] == record["steps"] and on_disk["progress"] == 30


def test_a_stale_attempt_and_a_finished_job_are_ignored(tmp_path):
    _, checkpoints, reports, started = setup(tmp_path)

    async def scenario():
        rerun = await job_on_disk(checkpoints, attempt=2)
        late = ("step", {"info": "from the first attempt", "duration": 1.0})
        stale = await reports.report(rerun, 1, 0, *late)
        current = await reports.report(rerun, 2, 0, "progress", {"progress": 5})
        done = await job_on_disk(checkpoints)
        checkpoints.jobs[done]["status"] = records.SUCCESS
        after_end = await reports.report(done, 1, 0, "progress", {"progress": 50})
        unknown = await reports.report(str(uuid.uuid4()), 1, 0, "progress", {"progress": 1})
        return rerun, done, stale, current, after_end, unknown

    rerun, done, stale, current, after_end, unknown = asyncio.run(scenario())
    assert (stale, current, after_end, unknown) == (False, True, False, False)
    assert checkpoints.jobs[rerun]["steps"] == [] and checkpoints.jobs[rerun]["progress"] == 5
    assert checkpoints.jobs[done]["progress"] is None
    assert started.calls == []


def test_each_attempt_counts_its_own_sequence_and_an_unknown_kind_still_takes_its_turn(tmp_path):
    _, checkpoints, reports, _ = setup(tmp_path)

    async def scenario():
        job_id = await job_on_disk(checkpoints)
        assert await reports.report(job_id, 1, 0, "progress", {"progress": 10})
        assert not await reports.report(job_id, 1, 1, "telemetry", {})  # logged, not applied
        assert await reports.report(job_id, 1, 2, "progress", {"progress": 40})
        reports.forget(job_id, 1)
        checkpoints.jobs[job_id]["attempt"] = 2  # a retry starts again at 0
        assert await reports.report(job_id, 2, 0, "child", {"id": "c1", "info": "LOD 0"})
        done = {"id": "c1", "node": "node-2", "seconds": 1.5}
        assert await reports.report(job_id, 2, 1, "child_done", done)
        return checkpoints.jobs[job_id]

    record = asyncio.run(scenario())
    assert record["progress"] == 40
    assert record["children"] == [{"id": "c1", "info": "LOD 0", "node": "node-2", "seconds": 1.5}]
