"""3MF as a user sees it: every model part of a package, its names, instances, unit, colours.

Expected counts come from the package itself, parsed here with the standard library.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from tasks.steps.errors import ReadError
from tasks.steps.io import load
from tasks.steps.io.options import LOAD_DEFAULTS
from tasks.steps.io.threemf import read_3mf

DATA = Path(__file__).parents[1] / "data" / "3mf"
CORE = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"


def triangles_per_part(path: Path) -> dict[str, int]:
    """{part name: <triangle> count} over every .model part of the package."""
    with zipfile.ZipFile(path) as package:
        return {
            name: len(ElementTree.fromstring(package.read(name)).findall(f".//{CORE}triangle"))
            for name in package.namelist()
            if name.endswith(".model")
        }


def placed(scene) -> dict[str, str]:
    """{node: geometry} for every node that carries a mesh."""
    graph = scene.trimesh_scene.graph
    return {node: graph[node][1] for node in graph.nodes_geometry}


def test_production_package_loads_every_part_it_builds():
    path = DATA / "cube_gears_prod_req.3mf"
    parts = triangles_per_part(path)
    # the root part holds only the build: 17 items, each naming object 1 of another part
    assert parts["3D/3dmodel.model"] == 0
    scene = load(path)
    assert len(scene.trimesh_scene.geometry) == 17
    assert scene.triangle_count == sum(parts.values()) == 25692
    names = set(placed(scene))
    assert {"gear 1", "gear 17", "cube 7"} <= names
    assert scene.warnings == []


def test_production_package_matches_its_single_part_twin():
    # the same model written as one part by the core sample (placed elsewhere on the plate)
    split = load(DATA / "cube_gears_prod_req.3mf")
    single = load(DATA / "cube_gears.3mf")
    assert split.triangle_count == single.triangle_count
    assert np.allclose(split.trimesh_scene.extents, single.trimesh_scene.extents, atol=1e-6)


def test_component_ids_are_scoped_by_part():
    # both parts define object id 1: they are two different tetrahedra, not one mesh
    path = DATA / "production_components.3mf"
    parts = triangles_per_part(path)
    scene = load(path)
    meshes = scene.trimesh_scene.geometry
    assert len(meshes) == 2
    assert sorted(len(m.faces) for m in meshes.values()) == [
        parts["3D/Objects/partA.model"],
        parts["3D/Objects/partB.model"],
    ]
    assert scene.triangle_count == 8
    # the hierarchy stays: the assembly node, its two component nodes below it
    graph = scene.trimesh_scene.graph
    [assembly] = graph.transforms.children["world"]
    assert sorted(graph.transforms.children[assembly]) == sorted(placed(scene))
    # partB is placed 20 mm along +X in the file; after io.load that is 0.02 m
    x_offsets = sorted(graph[node][0][0, 3] for node in placed(scene))
    assert np.allclose(x_offsets, [0.0, 0.02])


def test_unit_and_up_axis_are_what_the_file_declares():
    scene = read_3mf(DATA / "cube_gears_prod_req.3mf", LOAD_DEFAULTS)
    assert (scene.unit, scene.up_axis) == (0.001, "z")
    assert (
        load(DATA / "cube_gears.3mf").source_unit,
        load(DATA / "cube_gears.3mf").source_up_axis,
    ) == (
        0.001,
        "z",
    )


@pytest.mark.parametrize(
    ("unit", "metres"),
    [
        ("micron", 1e-6),
        ("millimeter", 0.001),
        ("centimeter", 0.01),
        ("inch", 0.0254),
        ("foot", 0.3048),
        ("meter", 1.0),
        (None, 0.001),  # the spec's default
    ],
)
def test_every_3mf_unit_is_read(unit, metres, tmp_path):
    path = write_package(tmp_path / "tri.3mf", unit=unit)
    assert read_3mf(path, LOAD_DEFAULTS).unit == metres


def test_an_object_placed_three_times_stays_one_mesh(tmp_path):
    items = "".join(
        f'<item objectid="1" transform="1 0 0 0 1 0 0 0 1 {x} 0 0"/>' for x in (0, 10, 20)
    )
    scene = read_3mf(write_package(tmp_path / "three.3mf", build=items), LOAD_DEFAULTS)
    assert len(scene.trimesh_scene.geometry) == 1
    assert len(placed(scene)) == 3
    assert scene.triangle_count == 3
    assert sorted(set(placed(scene))) == ["tri", "tri_1", "tri_2"]


def test_colour_groups_become_face_colours():
    path = DATA / "rhombicuboctahedron_color.3mf"
    [mesh] = load(path).trimesh_scene.geometry.values()
    assert mesh.visual.kind == "face"
    colours = {tuple(c) for c in mesh.visual.face_colors}
    assert colours == {
        (0x00, 0x00, 0xA0, 255),
        (0xFF, 0x80, 0x40, 255),
        (0xFF, 0xFF, 0x00, 255),
        (0x00, 0xFF, 0x40, 255),
        (0xFF, 0x00, 0x80, 255),
    }


def test_colour_per_corner_is_flattened_with_a_warning():
    scene = load(DATA / "pyramid_vertexcolor.3mf")
    assert scene.triangle_count == 4
    assert scene.warnings == [
        "object 1 ('output_3mfbase8') of '/3D/3dmodel.model': 4 triangles have a colour per "
        "corner; each was given its first corner's colour"
    ]


def test_a_beam_lattice_only_file_says_why_nothing_loads():
    with pytest.raises(ReadError, match=r"its beam lattice \(391 beams\) was not read"):
        load(DATA / "pyramid_beam_lattice.3mf")


def test_triangles_naming_missing_vertices_are_dropped_with_a_warning(tmp_path):
    triangles = '<triangle v1="0" v2="1" v3="2"/><triangle v1="0" v2="1" v3="7"/>'
    scene = load(write_package(tmp_path / "bad.3mf", triangles=triangles))
    assert scene.triangle_count == 1
    assert scene.warnings == [
        "object 1 ('tri') of '/3D/3dmodel.model': ignored 1 of 2 triangles whose vertex "
        "index is out of range (the mesh has 3 vertices)"
    ]


def test_a_part_outside_the_package_is_refused(tmp_path):
    build = '<item objectid="1" p:path="/../../etc/passwd"/>'
    path = write_package(tmp_path / "escape.3mf", build=build)
    with pytest.raises(ReadError, match="points outside the package"):
        load(path)


def test_a_missing_part_is_skipped_with_a_warning(tmp_path):
    build = '<item objectid="1"/><item objectid="1" p:path="/3D/Objects/gone.model"/>'
    scene = load(write_package(tmp_path / "gone.3mf", build=build))
    assert scene.triangle_count == 1
    assert scene.warnings == [
        "build item 2 refers to part '/3D/Objects/gone.model', which is not in the package; skipped"
    ]


def test_a_zip_bomb_stops_at_the_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr("tasks.steps.io.threemf.MAX_MODEL_BYTES", 1 << 20)
    padding = "<!--" + " " * (4 << 20) + "-->"
    path = write_package(tmp_path / "bomb.3mf", triangles=padding)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(ReadError, match="probable zip bomb"):
        load(path)


def test_components_that_contain_themselves_are_refused(tmp_path):
    objects = '<object id="2"><components><component objectid="2"/></components></object>'
    path = write_package(tmp_path / "loop.3mf", build='<item objectid="2"/>', objects=objects)
    with pytest.raises(ReadError, match="contains itself through components"):
        load(path)


def write_package(
    path: Path,
    unit: str | None = "millimeter",
    build: str = '<item objectid="1"/>',
    triangles: str = '<triangle v1="0" v2="1" v3="2"/>',
    objects: str = "",
) -> Path:
    """A one-triangle 3MF package, with the given pieces swapped in."""
    unit_attribute = f' unit="{unit}"' if unit else ""
    model = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<model xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"'
        ' xmlns:p="http://schemas.microsoft.com/3dmanufacturing/production/2015/06"'
        f"{unit_attribute}><resources>"
        '<object id="1" name="tri" type="model"><mesh><vertices>'
        '<vertex x="0" y="0" z="0"/><vertex x="1" y="0" z="0"/><vertex x="0" y="1" z="0"/>'
        f"</vertices><triangles>{triangles}</triangles></mesh></object>{objects}"
        f"</resources><build>{build}</build></model>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Target="/3D/3dmodel.model" Id="rel0"'
        ' Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("_rels/.rels", rels)
        package.writestr("3D/3dmodel.model", model)
    return path
