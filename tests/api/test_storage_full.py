"""Storage that fills up: clear refusals, no ghost jobs, nothing lost once space is back.

The storage is a real 16 MiB tmpfs (mounting one needs root: CI runs as root), filled
with a real file until the kernel says ENOSPC, under the JobStore and the API of a
private service on the session's Ray cluster.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import ray

from conftest import error_of

FINAL = ("SUCCESS", "FAILURE", "REVOKED")


class Disk:
    """A small tmpfs: `fill()` takes every free byte with one file, `free()` gives them back."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1024 * 1024, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """Temporary files of failed atomic writes."""
        return [str(p) for p in self.root.rglob("*.tmp")]


@pytest.fixture()
def disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    yield Disk(mount)
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture()
def service_on(private_service, tmp_path):
    """A private service whose storage is on `root` (the small disk)."""
    return lambda root: private_service(
        storage=str(root / "storage"), scratch_dir=str(tmp_path / "scratch")
    )


def submit(client, process, file=None, **params):
    files = {"file": file} if file else None
    return client.post(
        "/jobs", data={"process": process, "params": json.dumps(params)}, files=files
    )


def wait(client, job_id, statuses=FINAL, timeout=60):
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def restart(store) -> None:
    """Kill the JobStore actor; Ray starts it again and it reloads from storage."""
    ray.kill(store.handle, no_restart=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.get(store.handle.ready.remote(), timeout=5)
            return
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline, "the JobStore did not come back"
            time.sleep(0.2)


def views_agree(client) -> dict[str, str]:
    """The list, each short status and each job's details say the same (of jobs that are not
    running: a running job's views move on between the calls); returns uuid -> status."""
    listed = {j["uuid"]: j for j in client.get("/jobs").json()["jobs"]}
    for job_id, entry in listed.items():
        short = client.get(f"/jobs/{job_id}").json()
        details = client.get(f"/jobs/{job_id}/details")
        assert details.status_code == 200, (job_id, details.text)
        details = details.json()
        for field in ("status", "error", "progress", "name"):
            assert entry[field] == short[field] == details[field], (job_id, field)
    return {job_id: entry["status"] for job_id, entry in listed.items()}


def on_disk(storage: Path, job_id: str) -> str:
    return json.loads((storage / "jobs" / job_id / "state.json").read_text())["status"]


def test_a_full_storage_refuses_submissions_with_507_and_keeps_no_ghost(service_on, disk):
    client, store = service_on(disk.root)
    assert wait(client, submit(client, "api_test").json()["uuid"])["status"] == "SUCCESS"
    disk.fill()

    with_file = submit(client, "convert_file", file=("part.obj", b"v 0 0 0\n" * 50_000))
    without_file = submit(client, "api_test")
    for refused in (with_file, without_file):
        details = error_of(refused, 507)
        assert "is full" in details and str(disk.root / "storage") in details, details
        assert refused.headers["retry-after"] == "30"

    assert len(client.get("/jobs").json()["jobs"]) == 1  # only the job from before
    assert sorted(p.name for p in (disk.root / "storage" / "jobs").iterdir()) == [
        client.get("/jobs").json()["jobs"][0]["uuid"]
    ]
    assert disk.leftovers() == []
    restart(store)
    assert len(client.get("/jobs").json()["jobs"]) == 1  # no ghost after a restart either

    disk.free()
    accepted = submit(client, "api_test")
    assert accepted.status_code == 200, accepted.text
    assert wait(client, accepted.json()["uuid"])["status"] == "SUCCESS"


def test_jobs_running_when_storage_fills_keep_their_outcome_and_resume_after_a_restart(
    service_on, disk
):
    client, store = service_on(disk.root)
    storage = disk.root / "storage"

    # 1. Finishes while the disk is full: SUCCESS in memory at once, on disk once space is back.
    first = submit(client, "sleep", duration=2).json()["uuid"]
    wait(client, first, statuses=("RUNNING",))
    disk.fill()
    state = wait(client, first)
    assert state["status"] == "SUCCESS" and state["error"] is None, state
    assert views_agree(client)[first] == "SUCCESS"
    assert on_disk(storage, first) != "SUCCESS"  # could not be written yet
    disk.free()
    deadline = time.monotonic() + 10
    while on_disk(storage, first) != "SUCCESS":
        assert time.monotonic() < deadline, "the final status never reached storage"
        time.sleep(0.1)

    # 2. Its outputs cannot be saved: a readable FAILURE naming the storage, not a traceback.
    writer = submit(client, "write_later", seconds=1.5, bytes=4 * 1024 * 1024).json()["uuid"]
    wait(client, writer, statuses=("RUNNING", "STARTED"))
    disk.fill()
    state = wait(client, writer)
    assert state["status"] == "FAILURE"
    assert "is full" in state["error"] and "outputs" in state["error"], state["error"]
    assert "\n" not in state["error"] and "\x1b" not in state["error"]
    traceback = client.get(f"/jobs/{writer}/details").json()["traceback"]
    assert "\x1b" not in traceback

    # 3. Finishes in memory, then the store restarts before space is back: it runs again.
    disk.free()
    second = submit(client, "sleep", duration=2).json()["uuid"]
    wait(client, second, statuses=("RUNNING",))
    disk.fill()
    assert wait(client, second)["status"] == "SUCCESS"
    restart(store)
    # On disk it was still running: it is run again (its views move on while it runs).
    assert client.get(f"/jobs/{second}").json()["status"] not in FINAL
    disk.free()
    state = wait(client, second, timeout=90)
    assert state["status"] == "SUCCESS"
    details = client.get(f"/jobs/{second}/details").json()
    assert details["retry"] == 1
    assert any("restarted" in step["info"] for step in details["steps"])

    # 4. After one more restart every view of every job agrees, and nothing half-written is left.
    time.sleep(1.5)  # the background flush writes what is still unsaved
    restart(store)
    statuses = views_agree(client)
    assert statuses == {first: "SUCCESS", writer: "FAILURE", second: "SUCCESS"}
    assert client.get(f"/jobs/{first}/details").json()["retry"] == 0  # ran once
    assert disk.leftovers() == []
