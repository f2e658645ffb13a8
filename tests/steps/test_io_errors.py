"""Failures read as one line naming the file and the format, never as a traceback."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import trimesh

from tasks.steps.errors import ReadError, UnsupportedFormatError, WriteError
from tasks.steps.io import load, save
from tasks.steps.scene import Scene

DATA = Path(__file__).parents[1] / "data"


def test_unknown_extension_is_unsupported(tmp_path):
    path = tmp_path / "plan.dwg"
    path.write_bytes(b"AC1032")
    with pytest.raises(
        UnsupportedFormatError,
        match=r"^unsupported format '\.dwg' for 'plan\.dwg'; this server reads 3dm, 3mf, brep, ",
    ):
        load(path)
    with pytest.raises(
        UnsupportedFormatError,
        match=r"^unsupported format '\.dwg' for 'out\.dwg'; this server writes 3mf, fbx, ",
    ):
        save(load(DATA / "off/Wuson.off"), tmp_path / "out.dwg")


def test_missing_file_names_the_file():
    with pytest.raises(ReadError, match=r"^cannot read 'nothing\.stl' as STL: file not found$"):
        load("/no/such/nothing.stl")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("fbx/transparentTest.fbx", "Not an FBX file"),
        ("gltf/MissingBin/BoxTextured.gltf", "buffer file 'BoxTextured0.bin' is missing"),
        ("ply/crash-30d6d0f7c529b3b66b4131700b7a4580cd7082df.ply", "header is truncated"),
        ("dae/box_nested_animation_4286.dae", "only placed through skin controllers"),
        ("off/OutOfMemory.off", "353,535,235,358 vertices"),
    ],
)
def test_broken_corpus_files_raise_read_error(name, reason):
    path = DATA / name
    started = time.perf_counter()
    with pytest.raises(ReadError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"cannot read '{path.name}' as ")
    assert reason in message
    assert "\n" not in message
    # OutOfMemory.off must fail on its header, not after allocating
    assert time.perf_counter() - started < 5


def test_truncated_binary_stl_says_how_much_is_missing(tmp_path):
    data = trimesh.exchange.stl.export_stl(trimesh.creation.box())
    path = tmp_path / "cut.stl"
    path.write_bytes(data[:-70])
    with pytest.raises(
        ReadError, match=r"^cannot read 'cut\.stl' as STL: binary header declares 12"
    ):
        load(path)


def test_truncated_off_says_its_numbers_run_out(tmp_path):
    data = (DATA / "off/Wuson.off").read_bytes()
    path = tmp_path / "cut.off"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=r"^cannot read 'cut.off' as OFF: the file holds fewer"):
        load(path)


def test_file_without_geometry_is_a_read_error(tmp_path):
    path = tmp_path / "empty.obj"
    path.write_text("# nothing here\n")
    with pytest.raises(ReadError, match="contains no triangles or points"):
        load(path)


def test_garbage_with_a_known_extension_is_a_read_error(tmp_path):
    for name in ("junk.glb", "junk.step", "junk.usda", "junk.3mf", "junk.ply"):
        path = tmp_path / name
        path.write_bytes(b"\x00\x01garbage" * 10)
        with pytest.raises(ReadError, match=rf"^cannot read '{name}' as "):
            load(path)


def test_wrong_extension_can_be_overridden(tmp_path):
    path = tmp_path / "mesh.bin"
    shutil.copy(DATA / "stl/Spider_ascii.stl", path)
    from tasks.steps.io import LoadOptions

    assert load(path, LoadOptions(format="stl")).triangle_count == 1368


def test_saving_an_empty_scene_is_a_write_error(tmp_path):
    with pytest.raises(
        WriteError, match=r"^cannot write 'x\.glb' as glTF: the scene has no geometry"
    ):
        save(Scene(trimesh_scene=trimesh.Scene()), tmp_path / "x.glb")


def test_a_slip_in_our_own_reader_code_is_not_blamed_on_the_file():
    from tasks.steps.io.common import describe

    def our_reader():
        return {}["vertices"]  # raised from a test file, as a library outside tasks/ would

    try:
        our_reader()
    except KeyError as exc:
        assert describe(exc).startswith("malformed file (KeyError")  # raised outside tasks/
    try:
        from tasks.steps.io import common

        common._raised_in_our_code(None)  # AttributeError inside tasks/steps/io/common.py
    except AttributeError as exc:
        reason = describe(exc)
        assert reason.startswith("a bug in this service (AttributeError: "), reason
        assert "steps/io/common.py:" in reason
