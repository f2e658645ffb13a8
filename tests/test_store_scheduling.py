"""The Scheduler, without Ray: queue slots and waiting lists, per-owner limits, draining."""

import uuid

import pytest

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.refusals import Draining, TooManyJobs
from tasks.scheduling import Scheduler
from tasks.settings import Settings
from tasks.storage import Storage

from conftest import job_record

CPU_ONLY = {"CPU": 8.0}
WITH_GPU = {"CPU": 8.0, "GPU": 1.0}


def scheduler(tmp_path, resources=CPU_ONLY, **overrides) -> Scheduler:
    settings = Settings(storage=str(tmp_path / "storage"), **overrides)
    checkpoints = JobCheckpoints(Storage(settings.storage))
    return Scheduler(settings, checkpoints.jobs, lambda: resources)


def add_job(sched: Scheduler, queue="cpu", owner="key-a") -> str:
    job_id = str(uuid.uuid4())
    sched.jobs[job_id] = job_record(job_id, queue=queue, owner=owner)
    return job_id


def test_a_cap_of_one_keeps_the_second_job_waiting_until_the_first_frees_its_slot(tmp_path):
    sched = scheduler(tmp_path, max_concurrent_jobs={"cpu": 1})
    first, second, third = (add_job(sched) for _ in range(3))
    assert sched.start_or_wait(first, "cpu")
    assert not sched.start_or_wait(second, "cpu")
    assert not sched.start_or_wait(third, "cpu")
    assert sched.running("cpu") == [first]
    assert sched.waiting("cpu") == [second, third]

    assert sched.release(first) == second  # first come, first served
    assert sched.start_or_wait(second, "cpu")  # the launch it triggers takes the free slot
    assert sched.running("cpu") == [second] and sched.waiting("cpu") == [third]


def test_a_job_keeps_its_slot_when_it_asks_again(tmp_path):
    sched = scheduler(tmp_path, max_concurrent_jobs={"cpu": 1})
    job = add_job(sched)
    assert sched.start_or_wait(job, "cpu")
    assert sched.start_or_wait(job, "cpu")  # a relaunch of the same job: still its slot
    assert sched.running("cpu") == [job]


def test_caps_are_per_queue_and_a_queue_without_one_is_unlimited(tmp_path):
    sched = scheduler(tmp_path, max_concurrent_jobs={"gpu": 1})
    assert sched.start_or_wait(add_job(sched, "gpu"), "gpu")
    assert not sched.start_or_wait(add_job(sched, "gpu"), "gpu")
    cpu_jobs = [add_job(sched) for _ in range(5)]
    assert all(sched.start_or_wait(job, "cpu") for job in cpu_jobs)


def test_a_waiting_job_that_ended_meanwhile_is_skipped(tmp_path):
    sched = scheduler(tmp_path, max_concurrent_jobs={"cpu": 1})
    first, cancelled, next_one = (add_job(sched) for _ in range(3))
    sched.start_or_wait(first, "cpu")
    sched.start_or_wait(cancelled, "cpu")
    sched.start_or_wait(next_one, "cpu")
    sched.jobs[cancelled]["status"] = records.REVOKED
    assert sched.release(first) == next_one
    assert sched.release(next_one) is None  # nobody left waiting


def test_draining_starts_nothing_new_and_refuses_new_jobs(tmp_path):
    sched = scheduler(tmp_path, max_concurrent_jobs={"cpu": 1})
    running, waiting = add_job(sched), add_job(sched)
    sched.start_or_wait(running, "cpu")
    sched.start_or_wait(waiting, "cpu")
    sched.draining = True
    assert sched.release(running) is None  # the waiting job resumes on the next start
    assert not sched.start_or_wait(add_job(sched), "cpu")  # even with the slot free
    with pytest.raises(Draining, match="shutting down"):
        sched.admit(sched.jobs[waiting])


def test_an_owner_past_its_limit_is_refused_until_one_of_its_jobs_finishes(tmp_path):
    sched = scheduler(tmp_path, jobs_in_progress_per_key=2)
    record = sched.jobs[add_job(sched, owner="key-a")]
    for _ in range(2):
        sched.admit(record)
        sched.accepted("key-a")
    with pytest.raises(TooManyJobs, match="already has 2 unfinished jobs"):
        sched.admit(record)
    sched.admit(sched.jobs[add_job(sched, owner="key-b")])  # another key has its own count
    sched.admit(record, limit_applies=False)  # an admin key is not limited
    sched.finished("key-a")
    sched.admit(record)
    assert sched.unfinished("key-a") == 1


def test_without_a_limit_or_an_owner_nobody_is_refused(tmp_path):
    unlimited = scheduler(tmp_path)
    record = unlimited.jobs[add_job(unlimited)]
    for _ in range(50):
        unlimited.admit(record)
        unlimited.accepted("key-a")
    limited = scheduler(tmp_path, jobs_in_progress_per_key=1)
    ownerless = limited.jobs[add_job(limited, owner=None)]
    limited.accepted(None)
    limited.admit(ownerless)


def test_after_a_reload_the_unfinished_jobs_count_for_their_owners(tmp_path):
    sched = scheduler(tmp_path, jobs_in_progress_per_key=1)
    entries = [
        {"status": records.RUNNING, "owner": "key-a"},
        {"status": records.SUCCESS, "owner": "key-b"},
    ]
    sched.count_unfinished(entries)
    with pytest.raises(TooManyJobs):
        sched.admit({"owner": "key-a"})
    sched.admit({"owner": "key-b"})  # its job is finished


def test_a_job_runs_on_its_queue_as_the_cluster_allows(tmp_path):
    with_gpu = scheduler(tmp_path, resources=WITH_GPU)
    choice, choices = with_gpu.queue_for(with_gpu.jobs[add_job(with_gpu, queue="gpu")])
    assert choice.options["num_gpus"] > 0 and choice.note is None
    assert set(choices) == {"cpu", "gpu", "gpuhigh"}

    on_cpu = scheduler(tmp_path, resources=CPU_ONLY)
    choice, _ = on_cpu.queue_for({"queue": "gpu"})
    assert "running on CPU workers" in choice.note and "num_gpus" not in choice.options
    assert on_cpu.queue_for({"queue": "gone"})[0] == on_cpu.queue_choices()["cpu"]
