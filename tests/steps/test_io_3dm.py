"""Rhino 3DM as a user sees it: layers as the tree, object names, materials, blocks stored
once, the model's unit, and B-reps through the render meshes Rhino saved.

Expected values come from the files through rhino3dm itself (openNURBS' tables, bounding
boxes), not through the reader under test; nested layers and blocks placed several
times are written with rhino3dm, as Rhino would save them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rhino3dm
import trimesh

from tasks.steps.errors import ReadError
from tasks.steps.io import load
from tasks.steps.io.options import LOAD_DEFAULTS
from tasks.steps.io.rhino import read_3dm

DATA = Path(__file__).parents[1] / "data" / "3dm"
EXAMPLE = DATA / "v4_example_file.3dm"  # openNURBS' example: layers, blocks, materials
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])


def children(scene, node: str) -> list[str]:
    return sorted(scene.trimesh_scene.graph.transforms.children.get(node, []))


def below(scene, node: str) -> list[str]:
    """Every node under `node` that carries geometry."""
    graph = scene.trimesh_scene.graph
    found, pending = [], [node]
    while pending:
        current = pending.pop()
        pending.extend(graph.transforms.children.get(current, []))
        if current in graph.nodes_geometry:
            found.append(current)
    return found


def test_layers_become_the_top_of_the_tree():
    model = rhino3dm.File3dm.Read(str(EXAMPLE))
    scene = load(EXAMPLE)
    root = scene.trimesh_scene.graph.base_frame
    assert children(scene, root) == sorted(layer.Name for layer in model.Layers)
    # every object sits on the layer openNURBS gives it
    for kind, layer in [("Mesh", "Meshes"), ("PointCloud", "Points")]:
        expected = sum(
            type(obj.Geometry).__name__ == kind
            and model.Layers[obj.Attributes.LayerIndex].Name == layer
            for obj in model.Objects
        )
        assert len(below(scene, layer)) == expected >= 1


def test_nested_layers_and_object_names_are_kept(tmp_path):
    path = write_model(tmp_path / "parts.3dm", rhino3dm.UnitSystem.Inches)
    scene = load(path)
    root = scene.trimesh_scene.graph.base_frame
    assert children(scene, root) == ["Parts"]
    assert "Bolts" in children(scene, "Parts")
    assert children(scene, "Bolts") == ["bolt M6"]


def test_a_block_placed_three_times_is_stored_once(tmp_path):
    scene = load(write_model(tmp_path / "parts.3dm", rhino3dm.UnitSystem.Inches))
    graph = scene.trimesh_scene.graph
    instances = [node for node in children(scene, "Parts") if node.startswith("nut")]
    assert instances == ["nut", "nut_1", "nut_2"]
    placed = [mesh for node in instances for mesh in below(scene, node)]
    assert len(placed) == 3 and len({graph[node][1] for node in placed}) == 1
    # 10, 20 and 30 inches along X
    assert np.allclose(sorted(graph[node][0][0, 3] for node in placed), [0.254, 0.508, 0.762])


def test_nested_blocks_of_the_example_are_meshed_once():
    model = rhino3dm.File3dm.Read(str(EXAMPLE))
    by_id = {str(obj.Attributes.Id): obj for obj in model.Objects}
    block_02 = next(d for d in model.InstanceDefinitions if d.Name == "Block 02")
    members = [by_id[str(member)].Geometry for member in block_02.GetObjectIds()]
    # Block 02 holds a B-rep and an instance of Block 01 (itself a B-rep); IRefs has two
    # instances of Block 02: two distinct B-reps, each placed twice
    assert sorted(type(m).__name__ for m in members) == ["Brep", "InstanceReference"]
    scene = load(EXAMPLE)
    graph = scene.trimesh_scene.graph
    placed = below(scene, "IRefs")
    assert len(placed) == 4
    assert len({graph[node][1] for node in placed}) == 2


def test_the_size_is_right_in_metres_from_the_model_unit():
    path = DATA / "v7_my_mesh_with_material.3dm"
    model = rhino3dm.File3dm.Read(str(path))
    assert model.Settings.ModelUnitSystem == rhino3dm.UnitSystem.Millimeters
    box = model.Objects[0].Geometry.GetBoundingBox()
    expected = np.array([[box.Min.X, box.Min.Y, box.Min.Z], [box.Max.X, box.Max.Y, box.Max.Z]])
    expected = np.sort(Z_UP_TO_Y_UP @ (expected.T * 0.001), axis=1).T
    scene = load(path)
    assert (scene.source_unit, scene.source_up_axis) == (0.001, "z")
    assert np.allclose(scene.trimesh_scene.bounds, expected, atol=1e-9)


@pytest.mark.parametrize(
    ("unit", "metres"),
    [
        (rhino3dm.UnitSystem.Millimeters, 0.001),
        (rhino3dm.UnitSystem.Centimeters, 0.01),
        (rhino3dm.UnitSystem.Meters, 1.0),
        (rhino3dm.UnitSystem.Inches, 0.0254),
        (rhino3dm.UnitSystem.Feet, 0.3048),
        (getattr(rhino3dm.UnitSystem, "None"), None),  # "None" is a keyword in Python
    ],
)
def test_the_model_unit_is_read(unit, metres, tmp_path):
    path = write_model(tmp_path / "unit.3dm", unit)
    assert read_3dm(path, LOAD_DEFAULTS).unit == metres
    # a model in no unit is taken as metres, as the other unitless formats are
    assert load(path).source_unit == (metres or 1.0)


def test_the_render_material_gives_the_colour():
    path = DATA / "v7_my_mesh_with_material.3dm"
    model = rhino3dm.File3dm.Read(str(path))
    [material] = model.Materials
    scene = load(path)
    [node] = scene.trimesh_scene.graph.nodes_geometry
    assert node == model.Objects[0].Attributes.Name == "my mesh with material"
    mesh = scene.trimesh_scene.geometry[scene.trimesh_scene.graph[node][1]]
    assert mesh.visual.material.name == material.Name == "my render material"
    assert list(mesh.visual.material.baseColorFactor[:3]) == list(material.DiffuseColor)[:3]
    # its bitmap is not shipped with the file: said, and the colour used
    assert scene.warnings == [
        "texture 'example_texture.bmp' of material 'my render material' is not next to the "
        "file; its colour is used"
    ]


def test_a_material_bitmap_next_to_the_file_becomes_its_texture(tmp_path):
    from PIL import Image

    model = rhino3dm.File3dm.Read(str(EXAMPLE))
    [textured] = [m for m in model.Materials if m.GetBitmapTexture() is not None]
    # the file names it by a path on its author's machine; it is looked up by its name
    assert textured.GetBitmapTexture().FileName.endswith("/AtoZ.bmp")
    copy = tmp_path / EXAMPLE.name
    copy.write_bytes(EXAMPLE.read_bytes())
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "AtoZ.bmp")
    scene = load(copy)
    [mesh] = [
        g
        for g in scene.trimesh_scene.geometry.values()
        if getattr(getattr(g, "visual", None), "material", None) is not None
        and g.visual.material.baseColorTexture is not None
    ]
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.material.baseColorTexture.size == (8, 8)
    assert not [w for w in scene.warnings if "texture" in w]


def test_breps_extrusions_and_subds_come_through_their_meshes():
    path = DATA / "v8_selective_clipping.3dm"
    model = rhino3dm.File3dm.Read(str(path))
    kinds = [type(obj.Geometry).__name__ for obj in model.Objects]
    scene = load(path)
    graph = scene.trimesh_scene.graph
    placed = [node.rsplit("_", 1)[0] for node in graph.nodes_geometry]
    for kind in ("Brep", "Extrusion", "Mesh", "SubD", "PointCloud"):
        assert placed.count(kind) == kinds.count(kind) == 3, kind
    assert any(isinstance(g, trimesh.PointCloud) for g in scene.trimesh_scene.geometry.values())
    # the two bare NURBS surfaces have no render mesh: counted, not silently dropped
    assert kinds.count("Surface") == 2
    assert scene.warnings[0].startswith(
        "skipped 2 B-rep, extrusion or surface object(s) that carry no render mesh"
    )
    assert scene.warnings[1] == (
        "skipped objects that have no surface: 3 annotation(s), 3 curve(s), 3 hatch(es), 3 point(s)"
    )


def test_a_brep_without_render_mesh_fails_and_says_why():
    with pytest.raises(ReadError, match=r"its 1 B-rep, .* carry no render mesh"):
        load(DATA / "v7_my_brep.3dm")


def test_a_file_that_is_not_3dm_fails_clearly(tmp_path):
    path = tmp_path / "junk.3dm"
    path.write_bytes(b"3D Geometry File Format  garbage")
    with pytest.raises(ReadError, match=r"cannot read 'junk.3dm' as 3DM: "):
        load(path)


def write_model(path: Path, unit) -> Path:
    """A model on layer ``Parts::Bolts``: a mesh ``bolt M6`` and a block ``nut`` placed
    three times (10, 20, 30 units along X) on ``Parts``."""
    model = rhino3dm.File3dm()
    model.Settings.ModelUnitSystem = unit
    parts = rhino3dm.Layer()
    parts.Name = "Parts"
    parts_index = model.Layers.Add(parts)
    bolts = rhino3dm.Layer()
    bolts.Name = "Bolts"
    bolts.ParentLayerId = model.Layers[parts_index].Id
    bolts_index = model.Layers.Add(bolts)
    bolt = rhino3dm.ObjectAttributes()
    bolt.LayerIndex = bolts_index
    bolt.Name = "bolt M6"
    model.Objects.AddMesh(tetrahedron(), bolt)
    member = rhino3dm.ObjectAttributes()
    member.LayerIndex = bolts_index
    nut = model.InstanceDefinitions.Add(
        "nut", "", "", "", rhino3dm.Point3d(0, 0, 0), (tetrahedron(),), (member,)
    )
    for x in (10, 20, 30):
        on_parts = rhino3dm.ObjectAttributes()
        on_parts.LayerIndex = parts_index
        reference = rhino3dm.InstanceReference(
            model.InstanceDefinitions[nut].Id, rhino3dm.Transform.Translation(x, 0, 0)
        )
        model.Objects.AddInstanceObject(reference, on_parts)
    assert model.Write(str(path), 8)
    return path


def tetrahedron():
    mesh = rhino3dm.Mesh()
    for x, y, z in [(0, 0, 0), (1, 0, 0), (0, 2, 0), (0, 0, 3)]:
        mesh.Vertices.Add(x, y, z)
    for a, b, c in [(0, 2, 1), (0, 1, 3), (1, 2, 3), (0, 3, 2)]:
        mesh.Faces.AddFace(a, b, c)
    return mesh
