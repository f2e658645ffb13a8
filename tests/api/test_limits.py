"""Abuse limits per key: request rate (429 + Retry-After) and unfinished jobs at once."""

import json

import pytest
from fastapi.testclient import TestClient

ADMIN, SUBMIT = "limits-admin-key", "limits-submit-key"


@pytest.fixture()
def app_with(private_service, tmp_path):
    """The app with an admin and a `submit` key, and `overrides` as settings."""
    from tasks.settings import hash_key

    def make(**overrides):
        keys = tmp_path / "keys.txt"
        keys.write_text(f"{hash_key(SUBMIT)} submit\n")
        client, _ = private_service(
            api_key_sha256=[hash_key(ADMIN)], api_keys_file=str(keys), **overrides
        )
        return client.app

    return make


def test_a_key_over_its_request_rate_gets_429_with_retry_after(app_with):
    app = app_with(requests_per_minute_per_key=5)
    client = TestClient(app, headers={"x-api-key": SUBMIT})
    codes = [client.get("/jobs").status_code for _ in range(5)]
    assert codes == [200] * 5
    limited = client.get("/jobs")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many requests" in limited.json()["detail"]["details"]
    # budgets are per key: another key is unaffected
    assert TestClient(app, headers={"x-api-key": ADMIN}).get("/jobs").status_code == 200


def test_a_key_with_too_many_unfinished_jobs_gets_429(app_with):
    app = app_with(jobs_in_progress_per_key=1)
    client = TestClient(app, headers={"x-api-key": SUBMIT})
    first = client.post("/jobs", data={"process": "sleep", "params": json.dumps({"duration": 3})})
    assert first.status_code == 200
    second = client.post("/jobs", data={"process": "api_test"})
    assert second.status_code == 429 and second.headers["retry-after"] == "5"
    assert "unfinished jobs" in second.json()["detail"]["details"]
    admin = TestClient(app, headers={"x-api-key": ADMIN})
    assert admin.post("/jobs", data={"process": "api_test"}).status_code == 200  # admins: no cap
    client.delete(f"/jobs/{first.json()['uuid']}")
    assert client.post("/jobs", data={"process": "api_test"}).status_code == 200
