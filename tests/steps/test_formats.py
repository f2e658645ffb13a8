"""The format registry: one `FormatSpec` per format, answered without importing a geometry library."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tasks.steps.errors import UnsupportedFormatError
from tasks.steps.io import load, save
from tasks.steps.io.registry import (
    CONTENT_KINDS,
    FORMATS,
    FormatSpec,
    format_name,
    format_spec,
    is_isolated,
    readable_extensions,
    reader_for,
    readers,
    register_reader,
    unregister_reader,
    unsupported_format,
    writable_extensions,
    writer_for,
    writers,
)

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data"
READS = (
    "3dm, 3mf, brep, dae, e57, fbx, glb, gltf, ifc, iges, igs, las, laz, obj, off, ply, pts,"
    " step, stl, stp, usd, usda, usdc, usdz, vrml, wrl, xyz, zae"
)
WRITES = "3mf, fbx, glb, gltf, las, laz, obj, off, ply, stl, usd, usda, usdc, usdz"


def _read_nothing(path, options):
    raise AssertionError("only registered, never called")


# -- the specs agree with the modules ---------------------------------------------------


def test_no_extension_belongs_to_two_formats():
    counts = Counter(extension for spec in FORMATS for extension in spec.extensions)
    assert [extension for extension, count in counts.items() if count > 1] == []


@pytest.mark.parametrize("spec", FORMATS, ids=lambda spec: spec.name)
def test_every_readable_extension_has_a_reader_and_every_writable_one_a_writer(spec):
    for extension in spec.extensions:
        if spec.readable:
            assert callable(spec.reader(extension))
        if spec.writable:
            assert callable(spec.writer(extension))


@pytest.mark.parametrize("module", sorted({spec.module for spec in FORMATS}))
def test_each_module_offers_exactly_what_its_specs_declare(module):
    specs = [spec for spec in FORMATS if spec.module == module]
    loaded = importlib.import_module(module)
    declared_reads = {e for spec in specs if spec.readable for e in spec.extensions}
    declared_writes = {e for spec in specs if spec.writable for e in spec.extensions}
    assert set(loaded.READERS) == declared_reads
    assert set(loaded.WRITERS) == declared_writes


def test_readers_and_writers_are_derived_from_the_specs():
    assert sorted(readers()) == readable_extensions() == READS.split(", ")
    assert sorted(writers()) == writable_extensions() == WRITES.split(", ")
    assert reader_for("part.STP") == ("stp", format_spec("step").reader("stp"))
    assert writer_for("scene.bin", "usdz") == ("usdz", format_spec("usdz").writer("usdz"))


def test_what_a_format_holds_is_named_from_the_known_kinds():
    for spec in FORMATS:
        assert spec.holds <= set(CONTENT_KINDS), spec.name
    assert format_spec("stl").holds == frozenset()
    assert "points" in format_spec("ply").holds
    assert {"hierarchy", "instances", "units"} <= format_spec("step").holds


def test_a_malformed_spec_fails_at_once():
    with pytest.raises(ValueError, match="lower case without the dot"):
        FormatSpec("DWG", (".DWG",), "tasks.steps.io.dwg")
    with pytest.raises(ValueError, match="up_axis"):
        FormatSpec("DWG", ("dwg",), "tasks.steps.io.dwg", up_axis="w")
    with pytest.raises(ValueError, match="unknown content"):
        FormatSpec("DWG", ("dwg",), "tasks.steps.io.dwg", holds=frozenset({"layers"}))


# -- answers that import nothing --------------------------------------------------------


def test_the_registry_imports_no_geometry_library():
    script = textwrap.dedent(
        """
        import sys
        from tasks.steps.io.registry import (
            format_spec, is_isolated, readable_extensions,
            unsupported_format, writable_extensions,
        )
        assert readable_extensions() and writable_extensions()
        assert format_spec("step").name == "STEP" and is_isolated("usdz")
        assert format_spec("stl").up_axis == "z" and "'.dwg'" in str(unsupported_format("a.dwg"))
        heavy = [name for name in ("trimesh", "OCP", "pxr", "ufbx") if name in sys.modules]
        assert not heavy, heavy
        # reading one format imports that format's module only
        from tasks.steps.io.registry import reader_for
        reader_for("part.stl")
        others = [m for m in ("cad", "usd", "fbx", "gltf") if "tasks.steps.io." + m in sys.modules]
        assert not others, others
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=120)


def test_isolation_follows_the_native_readers():
    isolated = {extension for spec in FORMATS if spec.isolated for extension in spec.extensions}
    native = {"step", "stp", "iges", "igs", "brep", "fbx", "usd", "usda", "usdc", "usdz"}
    native |= {"ifc", "3dm"}  # IfcOpenShell, rhino3dm (openNURBS)
    native |= {"e57", "wrl", "vrml"}  # libE57Format (pye57), OCCT's VRML reader
    assert isolated == native | {"ply"}
    assert is_isolated("STEP") and is_isolated(".fbx")
    assert not is_isolated("glb") and not is_isolated("obj") and not is_isolated("dwg")


def test_cad_printing_and_stl_are_z_up_the_rest_y_up():
    z_up = {e for spec in FORMATS if spec.up_axis == "z" for e in spec.extensions}
    point_clouds = {"e57", "las", "laz", "pts", "xyz"}  # surveying's convention
    assert z_up == {"step", "stp", "iges", "igs", "brep", "3mf", "stl", "ifc", "3dm"} | point_clouds
    assert format_spec(".IGS").up_axis == "z" and format_spec("glb").up_axis == "y"


def test_units_when_the_file_declares_none():
    assert format_spec("glb").unit == 1.0
    assert format_spec("3mf").unit == format_spec("stp").unit == format_spec("igs").unit == 0.001


def test_names_and_specs_by_extension():
    assert format_spec(".STP") is format_spec("step")
    assert format_spec("dwg") is None
    names = {"stp": "STEP", "zae": "COLLADA", "usdz": "USD", "glb": "glTF", "dwg": "DWG"}
    assert {extension: format_name(extension) for extension in names} == names


# -- the unsupported-format message -----------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "what", "subject", "text"),
    [
        (
            "part.dwg",
            "read",
            None,
            f"unsupported format '.dwg' for 'part.dwg'; this server reads {READS}",
        ),
        (
            Path("README"),
            "read",
            None,
            f"unsupported format: 'README' has no extension; this server reads {READS}",
        ),
        (".STEP", "write", None, f"unsupported format '.step'; this server writes {WRITES}"),
        (
            "dwg",
            "write",
            "params.extension",
            f"unsupported format '.dwg' for params.extension; this server writes {WRITES}",
        ),
    ],
)
def test_unsupported_format_names_the_extension_and_lists_what_is_read_or_written(
    asked, what, subject, text
):
    error = unsupported_format(asked, what, subject=subject)
    assert isinstance(error, UnsupportedFormatError) and str(error) == text


def test_load_and_save_raise_the_same_message(tmp_path):
    path = tmp_path / "plan.dwg"
    path.write_bytes(b"AC1032")
    with pytest.raises(UnsupportedFormatError) as raised:
        load(path)
    assert str(raised.value) == str(unsupported_format(path))
    scene = load(DATA / "off/Wuson.off")
    with pytest.raises(
        UnsupportedFormatError,
        match=r"^unsupported format '\.step' for 'out\.step'; this server writes 3mf",
    ):
        save(scene, tmp_path / "out.step")


def test_a_registered_reader_wins_and_is_listed():
    register_reader(".DWG", _read_nothing)
    try:
        assert "dwg" in readable_extensions() and reader_for("a.dwg") == ("dwg", _read_nothing)
        assert "dwg" in str(unsupported_format("a.xyz"))
        register_reader("stl", _read_nothing)
        assert reader_for("a.stl")[1] is _read_nothing
    finally:
        unregister_reader("dwg")
        unregister_reader("stl")
    assert "dwg" not in readable_extensions()
    assert reader_for("a.stl")[1] is format_spec("stl").reader()
