"""Custom scripts are hostile: each escape a script might try, and that it fails.

Scripts run in the test service's sandbox (`tasks/sandbox/scripts.py`): per-job
uid, own namespaces, the scratch folder the only writable place. Where a test
says a script cannot reach something, it first checks that the thing is there
to reach from outside the sandbox.
"""

import glob
import os
import time
from pathlib import Path

import pytest

from conftest import submit, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox's per-job uid needs workers running as root"
)

SLEEPER = "import time\ndef main(pc, params):\n    time.sleep(params['seconds'])\n    return {}\n"

PROBE = """
import glob, json, os

def readable(path):
    try:
        with open(path, "rb") as f:
            return f.read(64).decode("latin-1")
    except OSError:
        return None

def main(pc, params):
    found = {}
    for pattern in params["targets"]:
        for path in glob.glob(pattern, recursive=True) or [pattern]:
            if readable(path) is not None:
                found[path] = readable(path)
    environs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            environs[pid] = readable(f"/proc/{pid}/environ")
    return {
        "found": found,
        "pids": sorted(environs),
        "environs": environs,
        "scratch": os.listdir(params["scratch"]) if "scratch" in params else None,
        "uid": os.getuid(),
    }
"""


def sandbox_processes() -> list[str]:
    """Host processes running under a script uid (tasks.sandbox.scripts.SCRIPT_UIDS)."""
    from tasks.sandbox.scripts import SCRIPT_UIDS

    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid in SCRIPT_UIDS:
                found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            pass
    return found


def details(client, job_id):
    return client.get(f"/jobs/{job_id}/details").json()


def test_a_script_cannot_read_another_jobs_input_or_the_storage(client, service, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the other job's secret input")
    other = submit(client, "custom", file=secret, script=SLEEPER, params={"seconds": 30})
    wait_for(client, other["uuid"], statuses=("STARTED", "RUNNING"))
    # From outside the sandbox the other job's input is there, in its scratch and the storage.
    scratch_copy = glob.glob(
        f"{service.settings.scratch_dir}/pixyz-{other['uuid'][:8]}-*/inputs/secret.txt"
    )
    stored = glob.glob(f"{service.storage}/**/{other['uuid']}/**/secret.txt", recursive=True)
    assert scratch_copy and stored
    targets = [
        *scratch_copy,
        *stored,
        f"{service.settings.scratch_dir}/pixyz-*/inputs/*",
        f"{service.storage}/**/*.txt",
    ]
    params = {"targets": targets, "scratch": service.settings.scratch_dir}
    probe = submit(client, "custom", script=PROBE, params=params)
    state = wait_for(client, probe["uuid"])
    assert state["status"] == "SUCCESS", state
    result = details(client, probe["uuid"])["result"]
    assert result["found"] == {}
    # The scratch root shows its own folder only.
    assert len(result["scratch"]) == 1
    assert result["scratch"][0].startswith(f"pixyz-{probe['uuid'][:8]}-")
    client.delete(f"/jobs/{other['uuid']}")


def test_a_script_sees_no_secrets_in_files_processes_or_environment(client):
    # Outside the sandbox: Ray's token and the workers' environments are readable by root.
    assert Path.home().joinpath(".ray", "auth_token").exists()
    script = "import os\ndef main(pc, params):\n    return {'env': sorted(os.environ)}\n"
    job = submit(client, "custom", script=script)
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    env = details(client, job["uuid"])["result"]["env"]
    assert not [
        k for k in env if k.startswith(("PIXYZ_", "AWS_", "RAY_")) and k != "PIXYZ_EVENTS_FD"
    ]
    targets = [str(Path.home() / ".ray" / "auth_token"), str(Path.home() / ".aws" / "credentials")]
    probe = submit(client, "custom", script=PROBE, params={"targets": targets})
    assert wait_for(client, probe["uuid"])["status"] == "SUCCESS"
    result = details(client, probe["uuid"])["result"]
    assert result["found"] == {}
    # Only the sandbox's own two processes (init and the script) are visible, and
    # neither environment holds the service's settings.
    assert result["pids"] == ["1", "2"]
    assert not any(
        "RAY_" in (e or "") or "PIXYZ_" in (e or "").replace("PIXYZ_EVENTS_FD", "")
        for e in result["environs"].values()
    )
    assert result["uid"] != 0


def test_a_script_can_write_nowhere_but_its_scratch_folder(client, service):
    script = """
import os, tempfile
def main(pc, params):
    refused = {}
    for folder in ["/", "/tmp", "/var/tmp", "/dev/shm", params["repo"], os.path.expanduser("~root"), "/etc"]:
        try:
            with open(os.path.join(folder, "pixyz-escape.txt"), "w") as f:
                f.write("x")
            refused[folder] = None
        except OSError as exc:
            refused[folder] = exc.strerror
    with tempfile.NamedTemporaryFile(dir=None) as own:  # TMPDIR is the scratch folder
        own.write(b"fine")
    return {"refused": refused, "tmpdir": tempfile.gettempdir()}
"""
    repo = str(Path(__file__).resolve().parents[2])
    job = submit(client, "custom", script=script, params={"repo": repo})
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    result = details(client, job["uuid"])["result"]
    assert all(result["refused"].values()), result["refused"]
    assert result["tmpdir"].startswith(f"{service.settings.scratch_dir}/pixyz-")
    assert not glob.glob("/tmp/pixyz-escape.txt") and not Path(repo, "pixyz-escape.txt").exists()


def test_a_script_cannot_become_root_or_undo_its_sandbox(client):
    script = """
import ctypes, os
def main(pc, params):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    tries = {}
    try:
        os.setuid(0)
        tries["setuid"] = "allowed"
    except OSError as exc:
        tries["setuid"] = exc.strerror
    tries["umount"] = "allowed" if libc.umount2(b"/tmp", 2) == 0 else os.strerror(ctypes.get_errno())
    tries["unshare"] = "allowed" if libc.unshare(0x10000000 | 0x00020000) == 0 else os.strerror(ctypes.get_errno())
    return tries
"""
    job = submit(client, "custom", script=script)
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    tries = details(client, job["uuid"])["result"]
    assert "allowed" not in tries.values(), tries


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing(client):
    script = """
import os, time
def main(pc, params):
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
"""
    healthy = submit(client, "api_test")
    job = submit(client, "custom", script=script)
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert "at most 64 processes" in state["error"]
    assert wait_for(client, healthy["uuid"])["status"] == "SUCCESS"
    assert sandbox_processes() == []


def test_filling_the_disk_stops_at_the_scratch_limit(client, service):
    # The test service allows 256 MiB in all and 64 MiB per file (conftest).
    script = """
def main(pc, params):
    for i in range(100):
        with open(pc.get_output_dir(f"part{i}.bin"), "wb") as f:
            for _ in range(32):
                f.write(b"x" * 1024**2)
"""
    healthy = submit(client, "api_test")
    job = submit(client, "custom", script=script, config={"time_limit": 60})
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert "disk limit of 256 MiB" in state["error"]
    assert wait_for(client, healthy["uuid"])["status"] == "SUCCESS"
    assert not glob.glob(f"{service.settings.scratch_dir}/pixyz-{job['uuid'][:8]}-*")


def test_cancelling_a_script_kills_everything_it_started(client):
    script = """
import os, signal, time
def main(pc, params):
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(600)
    time.sleep(600)
"""
    job = submit(client, "custom", script=script)
    wait_for(client, job["uuid"], statuses=("STARTED", "RUNNING"))
    deadline = time.monotonic() + 20
    while len(sandbox_processes()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(sandbox_processes()) == 4  # the script and its three children
    assert client.delete(f"/jobs/{job['uuid']}").status_code == 200
    deadline = time.monotonic() + 20
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() == []


def test_custom_script_sees_no_service_secrets(client):
    script = "import os\ndef main(pc, params):\n    return {'env': sorted(os.environ)}\n"
    job = submit(client, "custom", script=script)
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    env = client.get(f"/jobs/{job['uuid']}/details").json()["result"]["env"]
    assert not [
        k for k in env if k.startswith(("PIXYZ_", "AWS_", "RAY_")) and k != "PIXYZ_EVENTS_FD"
    ]


def test_custom_scripts_run_without_network(client, service):
    port = service.url.rsplit(":", 1)[1]
    script = (
        "import socket\n"
        "def main(pc, params):\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    return {'reached': True}\n"
    )
    job = submit(client, "custom", script=script)
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert "Network is unreachable" in state["error"]


def test_a_script_past_its_memory_limit_fails_naming_the_limit(client):
    script = "def main(pc, params):\n    block = bytearray(6 * 1024**3)\n    return {}\n"
    job = submit(client, "custom", script=script)
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert state["error"].startswith("MemoryError") and "memory limit is 4096 MiB" in state["error"]


def test_a_script_cannot_write_past_its_file_size_limit(client):
    # The test service allows 64 MiB per file (conftest); the script tries 100 MiB.
    script = (
        "def main(pc, params):\n"
        "    with open(pc.get_output_dir('big.bin'), 'wb') as f:\n"
        "        for _ in range(100):\n"
        "            f.write(b'x' * 1024**2)\n"
        "    return {}\n"
    )
    job = submit(client, "custom", script=script)
    state = wait_for(client, job["uuid"])
    assert state["status"] == "FAILURE"
    assert "File too large" in state["error"]
