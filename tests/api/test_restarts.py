"""Nothing is lost when the pieces restart: the JobStore actor and the Serve replica."""

import time

import httpx
import ray
from ray import serve

from conftest import submit, wait_for


def _store(service):
    return ray.get_actor(service.settings.store_name, namespace=service.settings.namespace)


def test_killing_the_job_store_mid_job_loses_nothing(client, service):
    done = submit(client, "api_test", name="finished-before")
    assert wait_for(client, done["uuid"])["status"] == "SUCCESS"
    running = submit(client, "sleep", params={"duration": 2}, name="running-during")
    wait_for(client, running["uuid"], statuses=("RUNNING",))

    ray.kill(_store(service), no_restart=False)  # crash: Ray restarts it, state comes from storage

    state = wait_for(client, running["uuid"], timeout=60)
    assert state["status"] == "SUCCESS"
    details = client.get(f"/jobs/{running['uuid']}/details").json()
    assert details["result"] == {"slept": 2.0}
    assert any("restarted" in s["info"] for s in details["steps"])
    listed = {j["uuid"]: j for j in client.get("/jobs").json()["jobs"]}
    assert listed[done["uuid"]]["status"] == "SUCCESS"
    assert client.get(f"/jobs/{done['uuid']}/details").json()["result"]["output"] == "Hello World!"


def test_a_job_store_killed_for_good_is_recreated_from_storage(client, service):
    done = submit(client, "api_test")
    wait_for(client, done["uuid"])
    ray.kill(_store(service), no_restart=True)
    time.sleep(1)
    state = client.get(f"/jobs/{done['uuid']}").json()
    assert state["status"] == "SUCCESS"
    fresh = submit(client, "api_test")
    assert wait_for(client, fresh["uuid"])["status"] == "SUCCESS"


def test_killing_the_serve_replica_leaves_jobs_running(client, service):
    job = submit(client, "sleep", params={"duration": 3})
    wait_for(client, job["uuid"], statuses=("RUNNING",))
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if "PixyzIngress" in a["name"]
    ]
    assert replicas, "no Serve replica found"
    for actor in replicas:
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)

    deadline = time.monotonic() + 60
    while True:  # Serve starts a new replica; meanwhile requests may fail
        try:
            if client.get("/").status_code == 200:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "Serve did not replace the replica"
        time.sleep(0.5)
    # HAProxy reloads its configuration once the new replica is up, closing kept-alive
    # connections then, and answers its own 500 page while no replica is up: a client sees
    # a dropped connection or a 500 without JSON for a moment, then the job's state
    while True:
        try:
            state = wait_for(client, job["uuid"])
            break
        except (httpx.TransportError, ValueError) as exc:
            assert time.monotonic() < deadline, f"the API kept failing: {exc!r}"
            time.sleep(0.5)
    assert state["status"] == "SUCCESS"
    assert serve.status().applications["pixyz"].status == "RUNNING"


def test_a_lost_index_is_rebuilt_from_the_job_folders(client, service):
    done = submit(client, "api_test", name="survives-index-loss")
    wait_for(client, done["uuid"])
    time.sleep(1)  # let the index flusher write
    index = service.storage / "state" / "index.json"
    index.write_text("{ torn write")
    ray.kill(_store(service), no_restart=False)
    time.sleep(1)
    listed = {j["uuid"]: j for j in client.get("/jobs").json()["jobs"]}
    assert listed[done["uuid"]]["status"] == "SUCCESS"
    assert listed[done["uuid"]]["name"] == "survives-index-loss"


def test_an_archive_left_half_built_by_a_dead_store_is_built_again(client, service):
    import json

    script = "def main(pc, params):\n    open(pc.get_output_dir('a.txt'), 'w').write('a')\n"
    job = submit(client, "custom", script=script)
    wait_for(client, job["uuid"])
    state_file = service.storage / "jobs" / job["uuid"] / "state.json"
    time.sleep(0.5)
    state = json.loads(state_file.read_text())
    state["archive"] = "building"  # as a store that died mid-build leaves it
    state_file.write_text(json.dumps(state))
    ray.kill(_store(service), no_restart=False)
    for _ in range(60):
        response = client.get(f"/jobs/{job['uuid']}/outputs/archive")
        if response.status_code == 200:
            break
        assert response.status_code == 425
        time.sleep(0.5)
    assert response.status_code == 200 and response.content[:2] == b"PK"
