"""Operator settings that shape scheduling: concurrency caps, no CPU fallback, retention, drain.

Each test runs its own JobStore actor (own name, own storage) on the session's
Ray cluster, behind the same FastAPI app the Serve replicas run.
"""

import time

import ray


def submit(client, process, **params):
    import json

    response = client.post("/jobs", data={"process": process, "params": json.dumps(params)})
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


def wait(client, job_id, statuses=("SUCCESS", "FAILURE", "REVOKED"), timeout=60):
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def test_a_queue_cap_keeps_extra_jobs_pending_until_a_slot_frees(private_service):
    client, _ = private_service(max_concurrent_jobs={"cpu": 1})
    first = submit(client, "sleep", duration=3)
    second = submit(client, "api_test")
    wait(client, first, statuses=("STARTED", "RUNNING"))
    time.sleep(0.5)
    assert client.get(f"/jobs/{second}").json()["status"] == "PENDING"
    assert wait(client, second)["status"] == "SUCCESS"
    details = {j: client.get(f"/jobs/{j}/details").json() for j in (first, second)}
    assert details[second]["time_info"]["started"] >= details[first]["time_info"]["stopped"]


def test_gpu_work_fails_clearly_when_cpu_fallback_is_forbidden(private_service):
    client, _ = private_service(allow_cpu_fallback=False)
    response = client.post("/jobs", data={"process": "api_test", "config": '{"queue": "gpu"}'})
    state = wait(client, response.json()["uuid"])
    assert state["status"] == "FAILURE"
    assert "queue 'gpu' has no matching nodes" in state["error"]


def test_retention_deletes_old_finished_jobs_and_their_files(private_service, tmp_path):
    client, store = private_service()
    old = submit(client, "api_test")
    wait(client, old)
    running = submit(client, "sleep", duration=2)
    deleted = ray.get(store.handle.sweep.remote(requested_before="9999"))
    assert deleted == 1  # the finished one; never the running one
    assert client.get(f"/jobs/{old}").status_code == 404
    assert not (tmp_path / "storage0" / "jobs" / old).exists()
    assert wait(client, running)["status"] == "SUCCESS"


def test_draining_refuses_new_jobs_with_503_and_waits_for_running_ones(private_service):
    client, store = private_service()
    running = submit(client, "sleep", duration=2)
    wait(client, running, statuses=("STARTED", "RUNNING"))
    remaining = ray.get(store.handle.drain.remote(10))
    assert remaining == 0
    assert client.get(f"/jobs/{running}").json()["status"] == "SUCCESS"
    refused = client.post("/jobs", data={"process": "api_test"})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "30"
    assert refused.json()["detail"]["details"].startswith("the service is shutting down")


def test_a_timed_out_job_is_retried_once_on_the_bigger_queue_when_asked(private_service):
    client, _ = private_service(timeout_retry_time_limit=30)
    asked = client.post(
        "/jobs",
        data={
            "process": "sleep",
            "params": '{"duration": 3}',
            "config": '{"time_limit": 1, "retry_on_timeout": true}',
        },
    ).json()["uuid"]
    not_asked = client.post(
        "/jobs",
        data={"process": "sleep", "params": '{"duration": 3}', "config": '{"time_limit": 1}'},
    ).json()["uuid"]

    assert wait(client, asked, timeout=90)["status"] == "SUCCESS"
    details = client.get(f"/jobs/{asked}/details").json()
    assert details["retry"] == 1 and details["queue"] == "gpuhigh"
    assert any(
        "time limit of 1 s exceeded" in s["info"]
        and "retrying once on queue 'gpuhigh' with 30 s" in s["info"]
        for s in details["steps"]
    ), details["steps"]

    state = wait(client, not_asked)
    assert state["status"] == "FAILURE"
    assert state["error"] == "time limit of 1 s exceeded (config.time_limit)"


def test_the_operator_can_retry_every_timed_out_job_and_a_retry_is_only_once(private_service):
    client, _ = private_service(retry_timed_out_jobs=True)
    job = client.post(
        "/jobs",
        data={"process": "sleep", "params": '{"duration": 5}', "config": '{"time_limit": 1}'},
    ).json()["uuid"]
    state = wait(client, job, timeout=90)
    assert state["status"] == "FAILURE"  # the retry ran out of time too: no third run
    assert state["error"] == "time limit of 1 s exceeded (config.time_limit)"
    assert client.get(f"/jobs/{job}/details").json()["retry"] == 1

    refused = client.post("/jobs", data={"process": "sleep", "config": '{"retry_on_timeout": 1}'})
    assert refused.status_code == 400
    assert (
        refused.json()["detail"]["details"]
        == "config.retry_on_timeout: Input should be a valid boolean (got 1)"
    )


def test_retention_deletes_finished_jobs_once_they_are_older_than_retention_days(
    private_service, tmp_path
):
    # 3 s of retention, checked twice a second: the background sweep, not a call to it
    # (which jobs the cutoff picks is tests/test_store_retention.py's, without timing).
    client, _ = private_service(retention_days=3 / 86400, retention_check_seconds=0.5)
    running = submit(client, "sleep", duration=15)
    old = submit(client, "api_test")
    wait(client, old)
    deadline = time.monotonic() + 20
    while client.get(f"/jobs/{old}").status_code != 404:
        assert time.monotonic() < deadline, "the old job was never swept"
        time.sleep(0.2)
    assert not (tmp_path / "storage0" / "jobs" / old).exists()
    # Older than 3 s but unfinished: never swept.
    assert client.get(f"/jobs/{running}").json()["status"] in ("PENDING", "STARTED", "RUNNING")
    assert (tmp_path / "storage0" / "jobs" / running / "state.json").exists()
    client.delete(f"/jobs/{running}")
