"""`load_isolated`: a reader that crashes takes down its child process, not the caller."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tasks.sandbox import landlock
from tasks.steps.errors import ReadError
from tasks.steps.io import load_isolated
from tasks.steps.io.isolate import run_isolated
from tasks.steps.io.registry import register_reader, unregister_reader

DATA = Path(__file__).parents[1] / "data"


def segfaulting_reader(path, options):
    """A native reader gone wrong: the process dies by SIGSEGV."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hanging_reader(path, options):
    time.sleep(60)


@pytest.fixture
def crash_format():
    register_reader("crash", segfaulting_reader)
    register_reader("hang", hanging_reader)
    yield
    unregister_reader("crash")
    unregister_reader("hang")


def test_isolated_load_returns_the_scene():
    scene = load_isolated(DATA / "step/red_cube_blue_cylinder.step")
    assert scene.source_format == "step"
    assert {"red_cube", "blue_cylinder"} <= set(scene.trimesh_scene.graph.nodes_geometry)
    assert scene.triangle_count > 0


def test_a_segfaulting_reader_becomes_a_read_error_and_the_caller_survives(tmp_path, crash_format):
    path = tmp_path / "model.crash"
    path.write_bytes(b"anything")
    with pytest.raises(
        ReadError, match=r"^cannot read 'model\.crash' as CRASH: the reader crashed \(signal 11\)$"
    ):
        load_isolated(path)
    # this process is alive and can still read files
    assert load_isolated(DATA / "off/Wuson.off").triangle_count == 3732


def test_a_hanging_reader_is_stopped_at_the_timeout(tmp_path, crash_format):
    path = tmp_path / "model.hang"
    path.write_bytes(b"anything")
    with pytest.raises(ReadError, match="took longer than 2 s"):
        load_isolated(path, timeout=2)


def test_read_errors_in_the_child_arrive_unchanged():
    with pytest.raises(ReadError, match="353,535,235,358 vertices"):
        load_isolated(DATA / "off/OutOfMemory.off")


@pytest.mark.skipif(landlock.abi_version() == 0, reason="the kernel has no Landlock")
def test_a_confined_reader_opens_files_in_its_folder_only(tmp_path):
    """Whatever a hostile file makes a native library open, only the job's folder is there."""
    folder = tmp_path / "job"
    (folder / "inputs").mkdir(parents=True)
    shutil.copy(DATA / "step/as1-oc-214.stp", folder / "inputs")
    secret = tmp_path / "other-job.txt"
    secret.write_text("another job's file")
    # A real reader works confined, and its temporary files stay in the folder.
    scene = load_isolated(folder / "inputs/as1-oc-214.stp", confine_to=folder)
    assert scene.triangle_count == 6544 and (folder / "tmp").is_dir()
    inside = run_isolated(Path.read_text, (secret,), secret, "txt")  # unconfined: readable
    assert inside == "another job's file"
    for target in (
        secret,
        DATA / "off/Wuson.off",
        Path("/etc/shadow"),
        Path.home(),
        Path("/proc/self/environ"),
    ):
        with pytest.raises(ReadError, match="Permission denied"):
            run_isolated(Path.read_bytes, (target,), target, "txt", confine_to=folder)
    written = run_isolated(
        Path.write_text, (folder / "out.txt", "ok"), folder, "txt", confine_to=folder
    )
    assert written == 2 and (folder / "out.txt").read_text() == "ok"
