"""Key roles: what read, submit, script and admin keys may do, and whose jobs they see.

A private app (the same FastAPI app the replicas run) with its own JobStore and
a keys file, next to one admin key from the settings.
"""

import json
import time

import pytest
import ray
from fastapi.testclient import TestClient

from conftest import TEST_PROCESSES

KEYS = {
    "read": "key-read-0001",
    "submit": "key-submit-0001",
    "script": "key-script-0001",
    "admin": "key-admin-0001",
    "submit2": "key-submit-0002",
}
ROLE_OF = {
    "read": "read",
    "submit": "submit",
    "script": "script",
    "admin": "admin",
    "submit2": "submit",
}


@pytest.fixture(scope="module")
def roles(ray_cluster, tmp_path_factory):
    from serve_app.app import build_app
    from serve_app.store_client import StoreClient
    from tasks.settings import Settings, hash_key

    folder = tmp_path_factory.mktemp("roles")
    keys_file = folder / "keys.txt"
    keys_file.write_text(
        "# digest role label\n"
        + "".join(
            f"{hash_key(KEYS[name])} {ROLE_OF[name]} {name}\n" for name in KEYS if name != "admin"
        )
        + "not-a-digest admin broken line\n"
    )
    settings = Settings(
        storage=str(folder / "storage"),
        api_key_sha256=[hash_key(KEYS["admin"])],
        api_keys_file=str(keys_file),
        allow_scripts=True,
        store_name=f"store-{folder.name}",
        process_path=str(TEST_PROCESSES),
    )
    store = StoreClient(settings)
    app = build_app(settings, store)
    yield app, keys_file
    ray.kill(store.handle, no_restart=True)


def as_key(roles, name):
    app, _ = roles
    return TestClient(app, headers={"x-api-key": KEYS[name]})


def wait(client, job_id):
    for _ in range(600):
        state = client.get(f"/jobs/{job_id}").json()
        if state["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return state
        time.sleep(0.05)
    raise AssertionError(state)


SCRIPT = (
    b"def main(pc, params):\n    open(pc.get_output_dir('o.txt'), 'w').write('o')\n    return {}\n"
)


@pytest.mark.parametrize(
    "name,code", [("read", 403), ("submit", 200), ("script", 200), ("admin", 200)]
)
def test_who_may_create_jobs(roles, name, code):
    response = as_key(roles, name).post("/jobs", data={"process": "api_test"})
    assert response.status_code == code, response.text
    if code == 403:
        assert "role 'read'" in response.json()["detail"]["details"]


@pytest.mark.parametrize(
    "name,code", [("read", 403), ("submit", 403), ("script", 200), ("admin", 200)]
)
def test_who_may_run_custom_scripts(roles, name, code):
    response = as_key(roles, name).post(
        "/jobs", data={"process": "custom"}, files={"script": ("s.py", SCRIPT)}
    )
    assert response.status_code == code, response.text


def test_a_key_sees_only_its_own_jobs_and_admin_sees_all(roles):
    mine = as_key(roles, "submit").post("/jobs", data={"process": "api_test"}).json()["uuid"]
    theirs = as_key(roles, "submit2").post("/jobs", data={"process": "api_test"}).json()["uuid"]
    wait(as_key(roles, "admin"), mine)
    wait(as_key(roles, "admin"), theirs)

    listed = {j["uuid"] for j in as_key(roles, "submit").get("/jobs").json()["jobs"]}
    assert mine in listed and theirs not in listed
    everything = {j["uuid"] for j in as_key(roles, "admin").get("/jobs").json()["jobs"]}
    assert {mine, theirs} <= everything

    other = as_key(roles, "submit")
    for path in ("", "/details", "/outputs", "/outputs/archive", "/outputs/o.txt"):
        response = other.get(f"/jobs/{theirs}{path}")
        assert response.status_code == 404, path  # as if it did not exist
    assert other.get(f"/backend/get_task_meta/{theirs}").status_code == 404
    assert other.delete(f"/jobs/{theirs}").status_code == 404
    assert other.get(f"/jobs/{mine}/details").json()["result"]["output"] == "Hello World!"
    assert as_key(roles, "admin").get(f"/jobs/{theirs}/details").status_code == 200


@pytest.mark.parametrize("name,code", [("read", 403), ("submit", 200), ("admin", 200)])
def test_who_may_cancel(roles, name, code):
    owner = "admin" if name == "admin" else "submit"
    job = as_key(roles, owner).post(
        "/jobs", data={"process": "sleep", "params": json.dumps({"duration": 5})}
    )
    job_id = job.json()["uuid"]
    client = as_key(roles, name)
    if name == "read":  # a read key of another owner cannot even see it; use the owner's view
        assert client.delete(f"/jobs/{job_id}").status_code == 403
        as_key(roles, owner).delete(f"/jobs/{job_id}")
        return
    assert client.delete(f"/jobs/{job_id}").status_code == code


def test_keys_are_added_and_revoked_without_a_restart(roles):
    from tasks.settings import hash_key

    _, keys_file = roles
    newcomer = "key-added-later"
    assert TestClient(roles[0], headers={"x-api-key": newcomer}).get("/jobs").status_code == 401
    original = keys_file.read_text()
    keys_file.write_text(original + f"{hash_key(newcomer)} read newcomer\n")
    time.sleep(1.2)  # the file is checked at most once a second
    assert TestClient(roles[0], headers={"x-api-key": newcomer}).get("/jobs").status_code == 200
    keys_file.write_text(original.replace(f"{hash_key(KEYS['submit2'])} submit submit2\n", ""))
    time.sleep(1.2)
    assert as_key(roles, "submit2").get("/jobs").status_code == 401
    keys_file.write_text(original)
    time.sleep(1.2)
