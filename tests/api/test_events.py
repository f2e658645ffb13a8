"""`GET /jobs/{uuid}/events`: a job's status, progress and steps as Server-Sent Events."""

import json
import time

import httpx
import pytest

from pixyz_client import Client, NotFound

from conftest import API_KEY, submit, wait_for


def read_events(response) -> list[tuple[int | None, str, dict]]:
    """(id, event, data) of each event of a text/event-stream body, and the comments seen."""
    events, event_id, kind, data = [], None, None, None
    for line in response.iter_lines():
        if not line:
            if kind is not None:
                events.append((event_id, kind, json.loads(data)))
            event_id, kind, data = None, None, None
        elif line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
    return events


def stream(client, job_id, **kwargs) -> list:
    with client.stream("GET", f"/jobs/{job_id}/events", **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_events(response)


def test_a_running_job_streams_each_change_then_end(client):
    job = submit(client, "sleep", params={"duration": 2})
    started = time.monotonic()
    events = stream(client, job["uuid"])
    assert time.monotonic() - started < 30
    ids = [e[0] for e in events if e[0] is not None]
    assert ids == list(range(1, len(ids) + 1))  # one numbered event per change, in order
    kinds = [e[1] for e in events]
    assert kinds[-1] == "end" and events[-1][0] is None
    assert events[-1][2]["status"] == "SUCCESS" and events[-1][2]["uuid"] == job["uuid"]
    statuses = [e[2]["status"] for e in events if e[1] == "status"]
    assert statuses[0] in ("SENT", "PENDING") and statuses[-1] == "SUCCESS"
    assert "RUNNING" in statuses or "STARTED" in statuses
    steps = [e[2] for e in events if e[1] == "step"]
    assert [s["info"] for s in steps][-2:] == ["Slept 1.0 of 2 s", "Slept 2.0 of 2 s"]
    assert [s["index"] for s in steps] == list(range(len(steps)))
    progress = [e[2]["progress"] for e in events if e[1] == "progress"]
    assert 50 in progress and progress[-1] == 100


def test_a_finished_job_streams_its_history_and_resumes_after_an_id(client):
    job = submit(client, "sleep", params={"duration": 1})
    wait_for(client, job["uuid"])
    started = time.monotonic()
    events = stream(client, job["uuid"])
    assert time.monotonic() - started < 5  # at once, no waiting
    assert events[-1][1] == "end" and events[-1][2]["status"] == "SUCCESS"
    last = events[-2][0]
    middle = events[1][0]
    after = stream(client, job["uuid"], params={"since": middle})
    assert [e[0] for e in after[:-1]] == list(range(middle + 1, last + 1))
    assert after[:-1] == events[middle:-1]
    by_header = stream(client, job["uuid"], headers={"Last-Event-ID": str(middle)})
    assert by_header == after
    assert stream(client, job["uuid"], params={"since": last}) == [events[-1]]


def test_events_of_unknown_jobs_are_404_and_bad_ids_400(client):
    response = client.get("/jobs/00000000-0000-4000-8000-000000000000/events")
    assert response.status_code == 404
    job = submit(client, "api_test")
    assert client.get(f"/jobs/{job['uuid']}/events", params={"since": -1}).status_code == 422
    bad = client.get(f"/jobs/{job['uuid']}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400


def test_a_quiet_job_gets_keep_alive_comments(private_service, monkeypatch):
    from serve_app.routers import jobs

    monkeypatch.setattr(jobs, "KEEPALIVE_SECONDS", 0.3)
    client, _ = private_service()
    job_id = client.post("/jobs", data={"process": "sleep", "params": '{"duration": 2}'}).json()[
        "uuid"
    ]
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        lines = list(response.iter_lines())
    assert ": ping" in lines
    assert "event: end" in lines


def test_the_sdk_waits_on_the_stream(service, client, monkeypatch):
    from pixyz_client.job import Job

    polls = []
    monkeypatch.setattr(Job, "state", lambda self: polls.append(1) or {})
    job = submit(client, "sleep", params={"duration": 1})
    with Client(service.url, API_KEY, progress=False) as sdk:
        details = sdk.job(job["uuid"]).wait()
    assert details["status"] == "SUCCESS" and details["steps"]
    assert polls == []  # no status polling


def test_the_sdk_polls_a_server_without_the_stream():
    calls = []
    states = iter(["RUNNING", "RUNNING", "SUCCESS"])

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.url.path == "/jobs/j1":
            return httpx.Response(200, json={"uuid": "j1", "status": next(states)})
        if request.url.path == "/jobs/j1/details":
            return httpx.Response(200, json={"uuid": "j1", "status": "SUCCESS", "steps": []})
        return httpx.Response(404, json={"detail": "Not Found"})

    with Client("http://old-server", "k", progress=False) as sdk:
        sdk._http = httpx.Client(
            base_url="http://old-server", transport=httpx.MockTransport(server)
        )
        details = sdk.job("j1").wait(poll=0.01)
        assert details["status"] == "SUCCESS"
        assert calls[0] == "/jobs/j1/events" and calls.count("/jobs/j1") == 3
        with pytest.raises(NotFound):
            list(sdk.job("j1").events())
