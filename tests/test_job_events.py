"""JobEvents without Ray: what each change of a record says, long polls, the after-end feed."""

import asyncio

from tasks.job_events import JobEvents

from conftest import job_record


def kinds(events):
    return [(e["id"], e["event"]) for e in events]


def test_each_change_is_one_numbered_event_and_a_waiter_wakes_on_it():
    async def scenario():
        events = JobEvents()
        record = job_record("j1")
        events.observe("j1", record)
        assert kinds(await events.wait("j1", record, 0, 0.01)) == [(1, "status")]
        waiter = asyncio.create_task(events.wait("j1", record, 1, 5))
        await asyncio.sleep(0.01)
        record["status"] = "RUNNING"
        record["steps"].append({"duration": 0.5, "info": "Read 3 parts"})
        record["progress"] = 50
        events.observe("j1", record)
        woke = await asyncio.wait_for(waiter, 1)
        assert kinds(woke) == [(2, "step"), (3, "progress"), (4, "status")]
        assert woke[0]["data"] == {"index": 0, "duration": 0.5, "info": "Read 3 parts"}
        events.observe("j1", record)  # nothing new: no event
        assert await events.wait("j1", record, 4, 0.01) == []

    asyncio.run(scenario())


def test_a_job_first_seen_finished_gets_its_history_from_its_record():
    async def scenario():
        events = JobEvents()
        record = job_record("j2", status="SUCCESS", progress=100)
        record["steps"] = [{"duration": 1.0, "info": "a"}, {"duration": 2.0, "info": "b"}]
        got = await events.wait("j2", record, 0, 5)  # finished: no waiting
        assert kinds(got) == [(1, "step"), (2, "step"), (3, "progress"), (4, "status")]
        assert got[-1]["data"] == {"status": "SUCCESS", "error": None}

    asyncio.run(scenario())


def test_the_after_end_feed_names_jobs_changed_or_deleted_after_their_end():
    async def scenario():
        events = JobEvents()
        record = job_record("j3", status="SUCCESS")
        events.observe("j3", record)
        first = await events.after_end(None, 0, 0.01)
        assert first["jobs"] == [] and not first["reset"]
        waiter = asyncio.create_task(events.after_end(first["epoch"], first["seq"], 5))
        await asyncio.sleep(0.01)
        record["callback"] = {"delivered": True}
        events.observe("j3", record)  # a change after the end
        changed = await asyncio.wait_for(waiter, 1)
        assert changed["jobs"] == ["j3"] and changed["seq"] == 1
        events.forget("j3")
        deleted = await events.after_end(changed["epoch"], changed["seq"], 0.01)
        assert deleted["jobs"] == ["j3"] and deleted["seq"] == 2
        # A follower of an older store incarnation gets this one's whole feed.
        other = await JobEvents().after_end(changed["epoch"], 2, 0.01)
        assert other["seq"] == 0 and not other["reset"]

    asyncio.run(scenario())
