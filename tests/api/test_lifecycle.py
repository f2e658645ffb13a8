"""A job's life: progress, failures with reasons, time limits, cancellation, crashes and retries."""

import time
from pathlib import Path

from conftest import submit, wait_for


def test_progress_and_steps_move_while_a_job_runs(client):
    job = submit(client, "sleep", params={"duration": 3})
    seen = set()
    while (state := client.get(f"/jobs/{job['uuid']}").json())["status"] not in (
        "SUCCESS",
        "FAILURE",
    ):
        if state["progress"] is not None:
            seen.add(state["progress"])
        time.sleep(0.1)
    assert state["status"] == "SUCCESS"
    assert seen & {33, 67}, f"no intermediate progress seen: {seen}"
    steps = client.get(f"/jobs/{job['uuid']}/details").json()["steps"]
    assert [s["info"] for s in steps][-3:] == [
        "Slept 1.0 of 3 s",
        "Slept 2.0 of 3 s",
        "Slept 3.0 of 3 s",
    ]
    assert all(0.5 < s["duration"] < 2.5 for s in steps[-3:])


def test_a_failing_process_ends_failure_with_a_readable_reason(client):
    script = "def main(pc, params):\n    raise ValueError('the mesh has no faces')\n"
    job = submit(client, "custom", script=script)
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert state["error"] == "ValueError: the mesh has no faces"
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert "Traceback" in details["traceback"] and details["retry"] == 0
    meta = client.get(f"/backend/get_task_meta/{job['uuid']}").json()
    assert meta["status"] == "FAILURE" and "no faces" in meta["result"] and meta["traceback"]


def test_a_param_out_of_range_is_a_400_before_anything_is_stored(client):
    details = submit(client, "sleep", params={"duration": -5}, expect=400)
    assert details == "params.duration: Input should be greater than or equal to 0 (got -5)"


def test_time_limit_ends_the_job_with_failure_saying_so(client):
    job = submit(client, "sleep", params={"duration": 60}, config={"time_limit": 2})
    state = wait_for(client, job["uuid"], timeout=30)  # long before the 60 s sleep ends
    assert state["status"] == "FAILURE"
    assert "time limit of 2 s exceeded" in state["error"]


def test_cancel_revokes_a_running_job_and_frees_its_worker(client):
    job = submit(client, "sleep", params={"duration": 120})
    wait_for(client, job["uuid"], statuses=("RUNNING",))
    response = client.delete(f"/jobs/{job['uuid']}")
    assert response.status_code == 200 and response.json()["status"] == "REVOKED"
    assert wait_for(client, job["uuid"])["status"] == "REVOKED"
    # Both CPUs are free again: two quick jobs finish promptly.
    quick = [submit(client, "api_test") for _ in range(2)]
    for q in quick:
        assert wait_for(client, q["uuid"], timeout=30)["status"] == "SUCCESS"
    again = client.delete(f"/jobs/{job['uuid']}")
    assert again.status_code == 200 and again.json()["status"] == "REVOKED"
    finished = client.delete(f"/jobs/{quick[0]['uuid']}")
    assert (
        finished.status_code == 400 and "already finished" in finished.json()["detail"]["details"]
    )


def test_a_crashed_worker_is_retried_and_counted(client):
    job = submit(client, "crash_once")
    state = wait_for(client, job["uuid"], timeout=90)
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert state["status"] == "SUCCESS", details
    assert details["retry"] == 1
    assert details["result"] == {"attempt": 2}
    assert any("died" in s["info"] and "retrying" in s["info"] for s in details["steps"])


def test_custom_script_runs_with_the_program_context(client):
    script = """
def main(pc, params):
    pc.progress_set_total(2)
    pc.progress_next("first")
    pc.progress_next("second")
    return {"queue": pc["queue"], "got": params["x"], "inputs": pc.get_input_dir() != ""}
"""
    job = submit(client, "custom", script=script, params={"x": [1, 2]}, config={"queue": "gpu"})
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["result"] == {"queue": "gpu", "got": [1, 2], "inputs": True}
    infos = [s["info"] for s in details["steps"]]
    assert infos[-2:] == ["first", "second"]
    assert any(
        "no matching nodes" in i for i in infos
    )  # no GPU here: ran on CPU workers, and says so


def test_custom_script_errors_are_reported_readably(client):
    job = submit(client, "custom", script="def main(pc, params):\n    raise KeyError('mesh')\n")
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert state["error"].startswith("KeyError: 'mesh'")


def test_signed_callback_is_delivered_when_the_job_ends(client, service):
    url = f"{service.url}/dev/callback"
    job = submit(client, "api_test", config={"callback_url": url})
    wait_for(client, job["uuid"])
    for _ in range(100):
        details = client.get(f"/jobs/{job['uuid']}/details").json()
        if details.get("callback"):
            break
        time.sleep(0.1)
    assert details["callback"]["delivered"] is True, details["callback"]
    received = client.get("/dev/callback").json()["callbacks"]
    mine = [c for c in received if c["payload"].get("uuid") == job["uuid"]]
    assert mine and mine[-1]["signature_valid"] is True
    assert mine[-1]["payload"]["status"] == "SUCCESS"


def test_unsigned_callback_posts_need_the_key(service):
    with service.client(key=None) as anonymous:
        assert anonymous.post("/dev/callback", json={"infos": {"a": 1}}).status_code == 401
    with service.client() as c:
        response = c.post("/dev/callback", json={"infos": {"a": 1}})
        assert response.status_code == 200 and response.json()["received"] is True


def test_metrics_count_requests_and_jobs(client, service):
    job = submit(client, "api_test")
    wait_for(client, job["uuid"])
    with service.client(key=None) as anonymous:
        response = anonymous.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'pixyz_jobs_submitted_total{process="api_test"}' in text
    assert 'pixyz_jobs_finished_total{process="api_test",status="SUCCESS"}' in text
    assert 'pixyz_http_requests_total{method="GET",route="/jobs/{job_uuid}",status="200"}' in text
    assert "pixyz_job_duration_seconds_bucket" in text and "pixyz_jobs_in_progress" in text


def test_a_process_can_fan_out_child_tasks_that_show_as_children_and_steps(client):
    job = submit(client, "fan_out", params={"values": [2, 3, 4]})
    state = wait_for(client, job["uuid"])
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert state["status"] == "SUCCESS", details
    assert details["result"] == {"squares": [4, 9, 16], "total": 29}
    infos = [s["info"] for s in details["steps"]]
    assert {"square 2", "square 3", "square 4", "sum on the gpu queue"} <= set(infos)
    meta = client.get(f"/backend/get_task_meta/{job['uuid']}").json()
    assert len(meta["children"]) == 4
    assert any("[gpu]" in c["info"] for c in meta["children"])


def test_no_scratch_folder_outlives_its_job(client, service):
    """Success, failure, a crashed worker, time limit and cancel: each job's folder goes,
    without waiting for another job to start on the node (each case runs alone)."""
    scratch = Path(service.settings.scratch_dir)

    def gone(job) -> bool:
        wait_for(client, job["uuid"], timeout=90)
        deadline = time.monotonic() + 15
        while list(scratch.glob(f"pixyz-{job['uuid'][:8]}-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not list(scratch.glob(f"pixyz-{job['uuid'][:8]}-*"))

    assert gone(submit(client, "api_test"))
    assert gone(submit(client, "custom", script="def main(pc, params):\n    raise ValueError\n"))
    assert gone(submit(client, "crash_once"))
    assert gone(submit(client, "sleep", params={"duration": 60}, config={"time_limit": 2}))
    cancelled = submit(client, "sleep", params={"duration": 60})
    wait_for(client, cancelled["uuid"], statuses=("RUNNING",))
    assert list(scratch.glob(f"pixyz-{cancelled['uuid'][:8]}-*"))
    client.delete(f"/jobs/{cancelled['uuid']}")
    assert gone(cancelled)


def test_text_that_is_not_unicode_fails_the_job_readably_and_breaks_no_answer(client):
    returns = submit(
        client, "custom", script="def main(pc, params):\n    return {'s': '\\ud800'}\n"
    )
    raises = submit(
        client, "custom", script="def main(pc, params):\n    raise ValueError('\\ud800')\n"
    )
    state = wait_for(client, returns["uuid"])
    assert state["status"] == "FAILURE" and "not valid Unicode" in state["error"]
    state = wait_for(client, raises["uuid"])
    assert state["status"] == "FAILURE" and state["error"].startswith("ValueError: ?")
    for job in (returns, raises):
        assert client.get(f"/jobs/{job['uuid']}/details").status_code == 200


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().split(")")[1].split()[1]) == pid
            ):
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            pass
    return found


def test_a_reader_child_dies_with_its_cancelled_job(client):
    """Native readers run in a child process; killing the worker must not leave it running."""
    job = submit(client, "slow_read", params={"seconds": 120})
    state = wait_for(client, job["uuid"], statuses=("RUNNING",))
    steps = client.get(f"/jobs/{job['uuid']}/details").json()["steps"]
    worker = int(next(s["info"] for s in steps if s["info"].startswith("worker pid")).split()[-1])
    deadline = time.monotonic() + 20
    while not (readers := _children_of(worker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert readers, state
    assert client.delete(f"/jobs/{job['uuid']}").status_code == 200
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in readers if Path(f"/proc/{pid}").exists()]


def test_a_custom_script_may_declare_its_own_params_model(client):
    script = (
        "from pydantic import BaseModel, Field\n\n"
        "class Params(BaseModel):\n"
        "    width: int = Field(8, ge=1)\n\n"
        "def main(pc, params):\n"
        "    return {'area': params.width ** 2}\n"
    )
    good = submit(client, "custom", script=script, params={"width": 3})
    assert wait_for(client, good["uuid"])["status"] == "SUCCESS"
    assert client.get(f"/jobs/{good['uuid']}/details").json()["result"] == {"area": 9}
    bad = wait_for(client, submit(client, "custom", script=script, params={"width": 0})["uuid"])
    assert bad["status"] == "FAILURE"
    assert (
        bad["error"]
        == "ParamsError: params.width: Input should be greater than or equal to 1 (got 0)"
    )
