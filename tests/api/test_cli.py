"""`pixyz serve` as an operator runs it: key handling, clean stop on SIGTERM, restart on the same storage."""

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


def _start(storage, port, env_extra=None):
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
    )
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
    assert key_file.read_text().strip() == key
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
    assert lines[-1].split()[2] == key  # the same key, read back from storage
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
