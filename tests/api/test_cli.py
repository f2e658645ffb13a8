"""`pixyz serve` as an operator runs it: key handling, clean stop on SIGTERM, restart on the same storage."""

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from conftest import free_port, ray_temp_dir

STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test():
    """A test that fails half-way must not leave its `pixyz serve` (and Ray) running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(timeout=30)


def _start(storage, port, env_extra=None, new_session=False):
    inherited = ("PIXYZ_API_KEY", "PIXYZ_API_KEY_SHA256", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serve_app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage",
            str(storage),
            "--num-cpus",
            "1",
            "--object-store-mb",
            "128",
            "--ray-temp-dir",
            ray_temp_dir() + "-cli",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,  # its own process group, as systemd or a terminal gives it
    )
    STARTED.append(proc)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("API key:"):
            return proc, lines
    proc.kill()
    pytest.fail("pixyz serve did not start:\n" + "".join(lines[-40:]))


def _stop(proc):
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    gone, alive = psutil.wait_procs(descendants, timeout=20)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.cluster
def test_serve_generates_a_key_stops_cleanly_and_restarts_with_every_job(tmp_path, ray_cluster):
    storage = tmp_path / "storage"
    port = free_port()
    proc, lines = _start(storage, port)
    key = lines[-1].split()[2]
    assert any(f"http://127.0.0.1:{port}" in line for line in lines)
    key_file = storage / "api_key"
    assert key not in key_file.read_text()  # printed once, never stored
    assert key_file.read_text().strip() == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        job = client.post("/jobs", data={"process": "api_test", "params": '{"n": 1}'}).json()
        for _ in range(300):
            if client.get(f"/jobs/{job['uuid']}").json()["status"] == "SUCCESS":
                break
            time.sleep(0.1)
        assert client.get("/jobs", headers={"x-api-key": "wrong"}).status_code == 401

    leftovers = _stop(proc)
    assert not leftovers, f"processes left behind: {[p.cmdline()[:2] for p in leftovers]}"

    proc, lines = _start(storage, port)
    assert key not in "".join(lines)  # not printed again: the service no longer knows it
    assert "the one printed when" in lines[-1]
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
            jobs = {j["uuid"]: j for j in client.get("/jobs").json()["jobs"]}
            assert jobs[job["uuid"]]["status"] == "SUCCESS"
            details = client.get(f"/jobs/{job['uuid']}/details").json()
            assert details["result"] == {"output": "Hello World!", "params": {"n": 1}}
    finally:
        assert not _stop(proc)


@pytest.mark.cluster
def test_serve_takes_the_key_from_the_environment(tmp_path, ray_cluster):
    port = free_port()
    proc, lines = _start(tmp_path / "s", port, {"PIXYZ_API_KEY": "from-env-key"})
    try:
        assert "from PIXYZ_API_KEY" in lines[-1]
        assert not (tmp_path / "s" / "api_key").exists()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/jobs", headers={"x-api-key": "from-env-key"}).status_code == 200
            assert client.get("/jobs", headers={"x-api-key": "other"}).status_code == 401
    finally:
        assert not _stop(proc)


def test_a_plain_key_left_by_an_older_version_is_replaced_by_its_digest(tmp_path):
    from serve_app.cli import ensure_api_key
    from tasks.settings import Settings

    (tmp_path / "api_key").write_text("old-plain-key\n")
    settings = Settings(storage=str(tmp_path))
    assert ensure_api_key(settings) is None  # nothing new to print
    assert settings.api_key_sha256 == [hashlib.sha256(b"old-plain-key").hexdigest()]
    assert "old-plain-key" not in (tmp_path / "api_key").read_text()
    assert ensure_api_key(Settings(storage=str(tmp_path))) is None  # read back as a digest


def _wait_status(client, job_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def _gone_within(proc, descendants, timeout):
    """Seconds until `proc` exited, and the descendants still alive after that."""
    started = time.monotonic()
    proc.wait(timeout=timeout)
    took = time.monotonic() - started
    _, alive = psutil.wait_procs(descendants, timeout=10)
    return took, [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.cluster
def test_sigterm_to_the_process_group_drains_then_stops_and_never_reruns_a_finished_job(
    tmp_path, ray_cluster
):
    """systemd's default KillMode, a closed terminal and `kill -- -PGID` signal the whole group."""
    storage, port = tmp_path / "storage", free_port()
    proc, lines = _start(storage, port, new_session=True)
    key = lines[-1].split()[2]
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        job = client.post("/jobs", data={"process": "sleep", "params": '{"duration": 4}'})
        job_id = job.json()["uuid"]
        _wait_status(client, job_id, ("RUNNING",))
        descendants = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        sent = time.monotonic()
        refused = client.post("/jobs", data={"process": "api_test"}, timeout=10)
        assert refused.status_code == 503, refused.text  # at once, not after a hang
        assert time.monotonic() - sent < 3
        assert "shutting down" in refused.json()["detail"]["details"]
    took, alive = _gone_within(proc, descendants, timeout=90)
    # The job had about 3 s left; the old failure mode was Ray's own 60 s GCS timeout.
    assert took < 30, f"took {took:.1f} s to stop"
    assert not alive, f"processes left behind: {[p.cmdline()[:2] for p in alive]}"

    proc, lines = _start(storage, port)
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
            details = client.get(f"/jobs/{job_id}/details").json()
            assert details["status"] == "SUCCESS", details
            assert details["retry"] == 0  # its finished work was recorded: not run again
            assert not any("restarted" in step["info"] for step in details["steps"])
    finally:
        assert not _stop(proc)


@pytest.mark.cluster
def test_sigterm_to_every_process_stops_promptly(tmp_path, ray_cluster):
    """Ray's own processes get the signal too (KillMode=control-group): no drain, no 60 s hang."""
    proc, _ = _start(tmp_path / "storage", free_port(), new_session=True)
    descendants = psutil.Process(proc.pid).children(recursive=True)
    for process in [psutil.Process(proc.pid), *descendants]:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    took, alive = _gone_within(proc, descendants, timeout=90)
    assert took < 20, f"took {took:.1f} s to stop"
    assert not alive, f"processes left behind: {[p.cmdline()[:2] for p in alive]}"


@pytest.mark.cluster
def test_serve_falls_back_to_serves_python_proxy(tmp_path, ray_cluster):
    port = free_port()
    proc, lines = _start(tmp_path / "storage", port, {"PIXYZ_INGRESS": "proxy"})
    try:
        listening = {
            psutil.Process(conn.pid).name()
            for conn in psutil.net_connections("tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid
        }
        assert listening == {"ray::ProxyActor"}
        key = lines[-1].split()[2]
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key}, timeout=30
        ) as client:
            job = client.post("/jobs", data={"process": "api_test"}).json()
            for _ in range(300):
                if client.get(f"/jobs/{job['uuid']}").json()["status"] == "SUCCESS":
                    break
                time.sleep(0.1)
            assert client.get(f"/jobs/{job['uuid']}").json()["status"] == "SUCCESS"
    finally:
        assert not _stop(proc)
