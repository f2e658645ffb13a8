"""The script sandbox on its own (no Ray): both ways of building it.

A root worker gives each script a uid of its own; a worker that is not root
builds the same sandbox inside a user namespace, keeping its uid. CI runs as
root, so the second way is chosen here by telling the sandbox the worker is not
root; the kernel then does what it does for a non-root worker's namespaces.
"""

import os
import tempfile
from pathlib import Path

import pytest

from tasks.context import ProgramContext
from tasks.sandbox import scripts as script_sandbox
from tasks.sandbox.scripts import ScriptError, ScriptLimits, run_script
from tasks.settings import Settings
from tasks.storage import Storage

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs a root test runner")

PROBE = """
import ctypes, os, socket
def main(pc, params):
    seen = {"uid": os.getuid(), "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}
    seen["other_job"] = os.path.exists(params["other_job"])
    seen["storage"] = os.path.exists(params["storage"])
    seen["input"] = open(pc.get_input_file()).read()
    for name, path in [("repo", params["repo"]), ("tmp", "/tmp"), ("shm", "/dev/shm")]:
        try:
            open(os.path.join(path, "escape.txt"), "w").close()
            seen["write_" + name] = "written"
        except OSError as exc:
            seen["write_" + name] = exc.strerror
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    except OSError as exc:
        seen["network"] = exc.strerror
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    seen["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
    open(pc.get_output_dir("out.txt"), "w").write("made in the sandbox")
    return seen
"""


@pytest.fixture(params=["own uid", "user namespace"])
def sandbox_mode(request, monkeypatch):
    if request.param == "user namespace":
        monkeypatch.setattr(script_sandbox, "_worker_is_root", lambda: False)
    return request.param


def run(tmp_path: Path, code: str, params: dict | None = None, **settings):
    job_id = "5a1db0c5" + "0" * 24
    storage = Storage(str(tmp_path / "storage"))
    storage.fs.makedirs(storage.job_path(job_id, "script"), exist_ok=True)
    Path(storage.job_path(job_id, "script", "script.py")).write_text(code)
    work = Path(tempfile.mkdtemp(prefix="pixyz-test-", dir=tmp_path / "scratch"))
    (work / "inputs").mkdir()
    (work / "outputs").mkdir()
    (work / "inputs" / "in.txt").write_text("the job's own input")
    pc = ProgramContext(
        job_id=job_id,
        input_dir=work / "inputs",
        input_file=work / "inputs" / "in.txt",
        output_dir=work / "outputs",
        params=params or {},
        info={},
        report=lambda kind, payload: None,
    )
    spec = {
        "job_id": job_id,
        "entrypoint": "main",
        "params": params or {},
        "info": {"time_limit": 30},
        "script_limits": ScriptLimits.from_settings(Settings(**settings)),
    }
    return work, run_script(work, spec, storage, pc, work / "inputs" / "in.txt", lambda *a: None)


def test_the_script_sees_its_own_files_only_and_can_change_nothing_else(tmp_path, sandbox_mode):
    (tmp_path / "scratch").mkdir()
    other = tmp_path / "scratch" / "pixyz-other-1-abcdefgh" / "inputs" / "secret.txt"
    other.parent.mkdir(parents=True)
    other.write_text("another job's input")
    stored = tmp_path / "storage" / "jobs" / "x" / "inputs" / "secret.txt"
    stored.parent.mkdir(parents=True)
    stored.write_text("stored input")
    repo = str(Path(__file__).resolve().parents[1])
    params = {"other_job": str(other), "storage": str(stored), "repo": repo}
    work, seen = run(tmp_path, PROBE, params)
    assert (work / "outputs" / "out.txt").read_text() == "made in the sandbox"
    assert seen["input"] == "the job's own input"
    assert seen["other_job"] is False and seen["storage"] is False
    assert seen["pids"] == ["1", "2"]
    assert seen["write_repo"] == seen["write_tmp"] == "Read-only file system"
    assert seen["write_shm"] == "Read-only file system"
    assert seen["network"] == "Network is unreachable"
    assert seen["mount"] == -1
    assert (seen["uid"] != 0) == (sandbox_mode == "own uid")
    assert not Path(repo, "escape.txt").exists() and not Path("/tmp/escape.txt").exists()


def test_errors_and_limits_are_named(tmp_path, sandbox_mode):
    (tmp_path / "scratch").mkdir()
    with pytest.raises(ScriptError, match="disk limit of 10 MiB"):
        run(
            tmp_path,
            "def main(pc, params):\n"
            "    for i in range(20):\n"
            "        open(pc.get_output_dir(f'{i}.bin'), 'wb').write(b'x' * 2**20)\n"
            "    import time; time.sleep(5)\n",
            script_disk_bytes=10 * 2**20,
        )
    with pytest.raises(ScriptError, match="^ValueError: bad params"):
        run(tmp_path, "def main(pc, params):\n    raise ValueError('bad params')\n")


def test_a_home_of_slash_hides_nothing_the_interpreter_needs(tmp_path, monkeypatch):
    """Containers often run with HOME=/; hiding it would hide the whole system."""
    monkeypatch.setenv("HOME", "/")
    (tmp_path / "scratch").mkdir()
    _, seen = run(
        tmp_path, "import os\ndef main(pc, params):\n    return {'etc': os.path.isdir('/etc')}\n"
    )
    assert seen == {"etc": True}


def test_running_scripts_never_share_a_uid():
    from tasks.sandbox.scripts import SCRIPT_UIDS, ScriptUids

    uids = ScriptUids()
    # Job ids that the old rule (id mod 65,536) mapped onto one uid.
    first, second = "00010000-aaaa", "00020000-bbbb"
    mine = uids.take(first)
    taken = {mine, uids.take(second), uids.take("00030000-cccc")}
    assert len(taken) == 3 and taken <= set(SCRIPT_UIDS)
    assert uids.take(first) == mine  # the same uid on a retry
    uids.release(first)
    assert uids.take("00040000-dddd") == mine  # a freed uid is reused, a taken one never
    small = ScriptUids(range(10, 11))
    small.take("a")
    with pytest.raises(RuntimeError, match="all 1 script uids are in use"):
        small.take("b")
