"""IFC as a user sees it: the spatial tree, named elements, their colours, real size, shared
representations and property counts.

Expected values come from the files through IfcOpenShell's own API (its entity graph,
``util.unit``, ``geom.create_shape``), not through the reader under test.
"""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.element
import ifcopenshell.util.representation
import ifcopenshell.util.unit
import numpy as np
import pytest

from tasks.steps.errors import ReadError
from tasks.steps.io import load, load_isolated
from tasks.steps.io.ifc import read_ifc
from tasks.steps.io.options import LOAD_DEFAULTS
from tasks.steps.metadata import metadata

DATA = Path(__file__).parents[1] / "data" / "ifc"
HOUSE = DATA / "IfcOpenHouse.ifc"  # IFC2X3, millimetres
BASIC = DATA / "basic.ifc"  # IFC4, metres, two storeys


def parent_of(scene, node: str) -> str:
    return scene.trimesh_scene.graph.transforms.parents[node]


def node_named(scene, name: str) -> str:
    [node] = [n for n in scene.trimesh_scene.graph.nodes if n == name]
    return node


def world_bounds(scene, node: str) -> np.ndarray:
    """[min, max] of the meshes at and below a node, in the scene's (metre, +Y) frame."""
    graph = scene.trimesh_scene.graph
    corners = []
    for placed in graph.nodes_geometry:
        path, current = [placed], placed
        while current != graph.base_frame:
            current = graph.transforms.parents[current]
            path.append(current)
        if node not in path:
            continue
        matrix, name = graph[placed]
        mesh = scene.trimesh_scene.geometry[name]
        corners.append(mesh.vertices @ matrix[:3, :3].T + matrix[:3, 3])
    points = np.concatenate(corners)
    return np.array([points.min(axis=0), points.max(axis=0)])


def surface_colour(element) -> tuple[float, float, float]:
    """The IfcColourRGB of the first styled item of an element's body representation."""
    [body] = [
        r for r in element.Representation.Representations if r.RepresentationIdentifier == "Body"
    ]
    [item, *_] = ifcopenshell.util.representation.resolve_representation(body).Items
    pending = list(item.StyledByItem[0].Styles)
    while pending:  # IFC2x3 wraps styles in IfcPresentationStyleAssignment
        style = pending.pop(0)
        if style.is_a("IfcSurfaceStyleShading"):
            colour = style.SurfaceColour
            return (colour.Red, colour.Green, colour.Blue)
        pending.extend(getattr(style, "Styles", None) or ())
    raise AssertionError(f"{element} has no surface colour")


def test_a_building_yields_its_spatial_tree_by_name():
    scene = load(BASIC)
    model = ifcopenshell.open(BASIC)
    assert sorted(storey.Name for storey in model.by_type("IfcBuildingStorey")) == [
        "Ground Floor",
        "Level 1",
    ]
    # project > site > building > storey > element, as IfcOpenShell decomposes the file
    for element in model.by_type("IfcProduct"):
        whole = ifcopenshell.util.element.get_aggregate(element)
        container = whole or ifcopenshell.util.element.get_container(element)
        assert parent_of(scene, node_named(scene, element.Name)) == container.Name, element
    assert parent_of(scene, "Slab") == "Ground Floor"
    assert parent_of(scene, "Beam") == "Empty" and parent_of(scene, "Empty") == "Level 1"
    assert parent_of(scene, "My Project") == scene.trimesh_scene.graph.base_frame
    assert scene.warnings == []


def test_a_house_yields_its_named_elements_with_their_colours():
    scene = load(HOUSE)
    model = ifcopenshell.open(HOUSE)
    [storey] = model.by_type("IfcBuildingStorey")
    assert storey.Name is None  # named after its class and GlobalId instead
    storey_node = f"BuildingStorey ({storey.GlobalId})"
    walls = [wall.Name for wall in model.by_type("IfcWall")]
    assert sorted(walls) == ["East wall", "North wall", "South wall", "West wall"]
    for wall in model.by_type("IfcWall"):
        assert parent_of(scene, wall.Name) == storey_node
        mesh = scene.trimesh_scene.geometry[scene.trimesh_scene.graph[wall.Name][1]]
        rgba = np.asarray(mesh.visual.material.baseColorFactor) / 255
        assert np.allclose(rgba, [*surface_colour(wall), 1.0], atol=1 / 255)
    # the roof's slabs are parts of the roof, and the windows' glass is see-through
    assert parent_of(scene, "South roof") == parent_of(scene, "North roof") == "Roof"
    plate = model.by_type("IfcPlate")[0]
    plate_node = f"Plate ({plate.GlobalId})"
    glass = scene.trimesh_scene.geometry[scene.trimesh_scene.graph[plate_node][1]]
    assert glass.visual.material.alphaMode == "BLEND"
    assert glass.visual.material.baseColorFactor[3] == round(255 * 0.1)
    # openings (the voids cut from walls) and spaces are not drawn
    assert not [n for n in scene.trimesh_scene.graph.nodes if n.startswith("OpeningElement")]


def test_the_house_is_its_real_size_in_metres():
    scene = load(HOUSE)
    model = ifcopenshell.open(HOUSE)
    unit = ifcopenshell.util.unit.calculate_unit_scale(model)
    assert unit == 0.001
    assert (scene.source_unit, scene.source_up_axis) == (unit, "z")
    assert (read_ifc(HOUSE, LOAD_DEFAULTS).unit, read_ifc(HOUSE, LOAD_DEFAULTS).up_axis) == (
        unit,
        "z",
    )
    # IfcOpenShell's own shape of each wall, in metres and world coordinates
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    for wall in model.by_type("IfcWall"):
        verts = np.asarray(ifcopenshell.geom.create_shape(settings, wall).geometry.verts)
        verts = verts.reshape(-1, 3)
        expected = np.array([verts.min(axis=0), verts.max(axis=0)])
        # io.load turns Z-up into +Y up: (x, y, z) -> (x, z, -y)
        expected = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]) @ expected.T
        expected = np.sort(expected, axis=1).T
        assert np.allclose(world_bounds(scene, wall.Name), expected, atol=1e-6), wall.Name
    # the south wall is 10 m long (its profile runs from -5000 to 5000 mm) and 3 m high
    size = np.ptp(world_bounds(scene, "South wall"), axis=0)
    assert np.allclose(size, [10.0, 3.0, 0.36], atol=1e-6)


def test_shared_representations_are_meshed_once():
    scene = load(HOUSE)
    model = ifcopenshell.open(HOUSE)
    graph = scene.trimesh_scene.graph
    members = model.by_type("IfcMember")
    sources = {
        item.MappingSource.id()
        for member in members
        for body in member.Representation.Representations
        if body.RepresentationIdentifier == "Body"
        for item in body.Items
        if item.is_a("IfcMappedItem")
    }
    assert (len(members), len(sources)) == (20, 2)
    placed = [graph[f"Member ({member.GlobalId})"][1] for member in members]
    assert len(placed) == 20 and len(set(placed)) == 2
    # both roof slabs map one representation: one mesh, two placements
    assert graph["South roof"][1] == graph["North roof"][1]
    assert not np.allclose(graph["South roof"][0], graph["North roof"][0])


def test_node_names_do_not_depend_on_the_number_of_threads(monkeypatch):
    single = load(HOUSE).trimesh_scene.graph
    # threads hand elements back in the order they finish them
    monkeypatch.setattr("tasks.steps.io.ifc._threads", lambda products: 4)
    threaded = load(HOUSE).trimesh_scene.graph
    assert sorted(threaded.nodes) == sorted(single.nodes)
    for node in threaded.nodes_geometry:
        assert threaded[node][1] == single[node][1]
        assert np.allclose(threaded[node][0], single[node][0])


def test_property_sets_are_counted_for_the_metadata():
    model = ifcopenshell.open(HOUSE)
    per_object = {
        obj.id(): sum(
            len(properties) - 1  # get_psets adds the set's own "id"
            for properties in ifcopenshell.util.element.get_psets(obj).values()
        )
        for obj in model.by_type("IfcObject")
    }
    carrying = [count for count in per_object.values() if count]
    counts = metadata(load(HOUSE))
    assert counts["metadata_component_count"] == len(carrying) == 1
    assert counts["metadata_property_count"] == sum(carrying) == 1


def test_an_upload_is_read_in_a_child_process():
    scene = load_isolated(HOUSE)
    assert "South wall" in scene.trimesh_scene.graph.nodes
    assert scene.source_unit == 0.001


def test_a_file_that_is_not_ifc_fails_clearly(tmp_path):
    path = tmp_path / "broken.ifc"
    path.write_text("ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC9'));\nENDSEC;\nDATA;\n#1=")
    with pytest.raises(ReadError, match=r"cannot read 'broken.ifc' as IFC: "):
        load(path)


def test_a_project_without_geometry_says_so(tmp_path):
    model = ifcopenshell.file(schema="IFC4")
    model.createIfcProject(ifcopenshell.guid.new(), None, "Empty project")
    path = tmp_path / "empty.ifc"
    model.write(str(path))
    with pytest.raises(ReadError, match="contains no triangles"):
        load(path)
