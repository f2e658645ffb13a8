"""Finished jobs are answered from the replica's cache: no call reaches the JobStore."""

import time

import ray

from serve_app.finished_jobs import FinishedJobs

from conftest import API_KEY, job_record


def finished(client, process="api_test", **config) -> str:
    data = {"process": process}
    if config:
        import json

        data["config"] = json.dumps(config)
    job_id = client.post("/jobs", data=data).json()["uuid"]
    for _ in range(600):
        if client.get(f"/jobs/{job_id}").json()["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return job_id
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never finished")


def count_calls(store, monkeypatch) -> list[str]:
    calls = []
    real = store.call

    async def counted(method, *args):
        calls.append(method)
        return await real(method, *args)

    monkeypatch.setattr(store, "call", counted)
    return calls


def test_polls_of_a_finished_job_never_reach_the_store(private_service, monkeypatch):
    client, store = private_service()
    job_id = finished(client)
    first = client.get(f"/jobs/{job_id}/details").json()
    calls = count_calls(store, monkeypatch)
    for _ in range(20):
        assert client.get(f"/jobs/{job_id}").json()["status"] == "SUCCESS"
        assert client.get(f"/jobs/{job_id}/details").json() == first
    assert calls == []
    assert "owner" not in first and "settled" not in first  # the cache's own fields stay inside


def test_a_finished_job_is_answered_after_the_store_is_killed(private_service):
    client, store = private_service()
    job_id = finished(client)
    short = client.get(f"/jobs/{job_id}").json()
    details = client.get(f"/jobs/{job_id}/details").json()
    actor = ray.get_actor(store.settings.store_name, namespace=store.settings.namespace)
    ray.kill(actor, no_restart=True)
    for _ in range(50):  # killed: gone from the cluster's actors
        try:
            ray.get_actor(store.settings.store_name, namespace=store.settings.namespace)
        except ValueError:
            break
        time.sleep(0.1)
    assert client.get(f"/jobs/{job_id}").json() == short
    assert client.get(f"/jobs/{job_id}/details").json() == details


def test_the_cache_checks_the_owner(private_service, tmp_path):
    from tasks.settings import hash_key

    keys = tmp_path / "keys.txt"
    keys.write_text(f"{hash_key('other-key-0001')} submit other\n")
    client, _ = private_service(api_keys_file=str(keys))
    job_id = finished(client)  # the admin key's job
    client.get(f"/jobs/{job_id}/details")
    other = {"x-api-key": "other-key-0001"}
    mine = finished(client.__class__(client.app, headers=other))
    assert client.get(f"/jobs/{job_id}", headers=other).status_code == 404
    assert client.get(f"/jobs/{job_id}/details", headers=other).status_code == 404
    assert client.get(f"/jobs/{mine}", headers=other).status_code == 200
    assert client.get(f"/jobs/{mine}", headers={"x-api-key": API_KEY}).status_code == 200


def test_details_wait_for_the_callback_before_being_cached(private_service, monkeypatch):
    client, store = private_service(callback_allowed_networks=["127.0.0.0/8"], callback_attempts=2)
    # Nobody listens there: the delivery fails after its retries, and says so.
    job_id = finished(client, callback_url="http://127.0.0.1:9/hook")
    for _ in range(600):
        callback = client.get(f"/jobs/{job_id}/details").json()["callback"]
        if callback is not None:
            break
        time.sleep(0.05)
    assert callback is not None and callback["delivered"] is False
    calls = count_calls(store, monkeypatch)
    assert client.get(f"/jobs/{job_id}/details").json()["callback"] == callback
    assert calls == []


def test_a_job_deleted_by_retention_leaves_the_cache(private_service):
    client, store = private_service()
    job_id = finished(client)
    assert client.get(f"/jobs/{job_id}/details").status_code == 200  # cached now
    assert ray.get(store.handle.sweep.remote(requested_before="9999")) == 1
    deadline = time.monotonic() + 5  # the replica follows the store's feed of deletions
    while client.get(f"/jobs/{job_id}").status_code != 404:
        assert time.monotonic() < deadline, "the deleted job is still answered"
        time.sleep(0.05)
    assert client.get(f"/jobs/{job_id}/details").status_code == 404


def test_the_cache_is_bounded_and_expires():
    cache = FinishedJobs(max_entries=3, ttl=0.2)
    for n in range(5):
        record = job_record(f"job-{n}", status="SUCCESS")
        cache.keep_short(record["uuid"], {"uuid": record["uuid"], "status": "SUCCESS"})
    assert len(cache) == 3 and cache.lookup("job-0") is None and cache.lookup("job-4")
    cache.keep_short("running", {"uuid": "running", "status": "RUNNING"})
    assert cache.lookup("running") is None  # only finished jobs
    time.sleep(0.25)
    assert cache.lookup("job-4") is None
