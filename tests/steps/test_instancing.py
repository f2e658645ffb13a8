"""Instances stay instances, the tree stays a tree: a mesh placed N times is stored once and
placed N times in every file that can say so (glTF, USD), through reading, writing,
decimation and levels of detail. Each check reads the files with a loader of its own
(pygltflib for glTF, pxr for USD), not with the readers under test."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from tasks.processes._shared import glb_bytes
from tasks.steps.decimate import DecimateOptions, decimate
from tasks.steps.io import load, save
from tasks.steps.lods import LodOptions, lods

DATA = Path(__file__).parents[1] / "data"
AS1 = DATA / "step/as1-oc-214.stp"
# as1-oc-214: 18 placed parts showing 5 distinct meshes (8 nuts, 6 bolts, 2 brackets...)
AS1_PLACEMENTS = {"nut": 8, "bolt": 6, "l-bracket": 2, "plate": 1, "rod": 1}


def glb_placements(path: Path) -> dict[str, int]:
    """{mesh name: how many nodes show it}, over every mesh the GLB stores (pygltflib)."""
    document = pygltflib.GLTF2().load(str(path))
    shown = collections.Counter(node.mesh for node in document.nodes if node.mesh is not None)
    return {mesh.name: shown[index] for index, mesh in enumerate(document.meshes)}


def usd_placements(path: Path) -> dict[tuple[str, int], int]:
    """{mesh: how many drawn Mesh prims show it} (pxr). A mesh is told by the weakest spec
    authoring it (the prototype's or referenced prim, or the prim itself when nothing is
    referenced) and a digest of the points and faces it composes to."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    shown: collections.Counter = collections.Counter()
    for prim in stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)):
        if not prim.IsA(UsdGeom.Mesh):
            continue
        mesh = UsdGeom.Mesh(prim)
        data = (mesh.GetPointsAttr().Get(), mesh.GetFaceVertexIndicesAttr().Get())
        source = prim.GetPrimInPrototype() if prim.IsInstanceProxy() else prim
        shown[str(source.GetPrimStack()[-1].path), hash(str(data))] += 1
    return dict(shown)


def world_placements(scene) -> dict[str, tuple[str, np.ndarray]]:
    """{node: (geometry, world transform)} of every placed geometry."""
    graph = scene.trimesh_scene.graph
    return {node: (graph[node][1], graph[node][0]) for node in graph.nodes_geometry}


def assert_same_placements(a, b) -> None:
    placed_a, placed_b = world_placements(a), world_placements(b)
    assert placed_a.keys() == placed_b.keys()
    for node, (geometry, transform) in placed_a.items():
        assert placed_b[node][0] == geometry, node
        assert np.allclose(placed_b[node][1], transform, atol=1e-6), node


@pytest.fixture(scope="module")
def as1():
    return load(AS1)


def test_step_reads_one_mesh_per_part_placed_at_every_occurrence(as1):
    placed = collections.Counter(geometry for geometry, _ in world_placements(as1).values())
    assert dict(placed) == AS1_PLACEMENTS
    assert set(as1.trimesh_scene.geometry) == set(AS1_PLACEMENTS)


def test_step_to_glb_to_usdz_keeps_the_meshes_and_their_placements(as1, tmp_path):
    [glb] = save(as1, tmp_path / "as1.glb")
    assert glb_placements(glb) == AS1_PLACEMENTS

    [usdz] = save(load(glb), tmp_path / "as1.usdz")
    placed = usd_placements(usdz)
    assert sorted(placed.values()) == sorted(AS1_PLACEMENTS.values())
    assert all(source.startswith("/Root/Prototypes/") for source, _ in placed)


def test_glb_to_usdz_to_glb_keeps_meshes_placements_names_and_tree(as1, tmp_path):
    [first] = save(as1, tmp_path / "first.glb")
    [usdz] = save(load(first), tmp_path / "as1.usdz")
    [second] = save(load(usdz), tmp_path / "second.glb")

    assert glb_placements(second) == glb_placements(first) == AS1_PLACEMENTS
    before, after = load(first), load(second)
    # the same nodes under the same parents ("l-bracket" too, which USD cannot spell)
    edges = before.trimesh_scene.graph.to_networkx().edges
    assert sorted(after.trimesh_scene.graph.to_networkx().edges) == sorted(edges)
    assert_same_placements(before, after)


QUAD = """
        int[] faceVertexCounts = [4]
        int[] faceVertexIndices = [0, 1, 2, 3]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
"""


def placed_at(name: str, x: float, arcs: str, body: str = "") -> str:
    return f"""
def Xform "{name}" (
    {arcs}
)
{{
    double3 xformOp:translate = ({x}, 0, 0)
    uniform token[] xformOpOrder = ["xformOp:translate"]
    {body}
}}
"""


def test_usd_instances_and_unchanged_references_share_one_mesh(tmp_path):
    (tmp_path / "bolt.usda").write_text(
        '#usda 1.0\n(defaultPrim = "Bolt")\n'
        f'def Xform "Bolt" {{\n def Mesh "Shape" {{{QUAD}}}\n}}\n'
    )
    moved = 'over "Shape" {\n point3f[] points = [(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0)]\n}'
    (tmp_path / "stage.usda").write_text(
        '#usda 1.0\n(metersPerUnit = 1\n upAxis = "Y")\n'
        f'class Xform "Proto" {{\n def Mesh "Shape" {{{QUAD}}}\n}}\n'
        # native instances of a class, a plain reference to it, references to another file
        + placed_at("A", 1, "instanceable = true\n references = </Proto>")
        + placed_at("B", 2, "instanceable = true\n references = </Proto>")
        + placed_at("C", 3, "references = </Proto>")
        + placed_at("D", 4, "references = @./bolt.usda@")
        + placed_at("E", 5, "references = @./bolt.usda@")
        # a reference that overrides the points shows another mesh
        + placed_at("F", 6, "references = </Proto>", moved)
    )
    # the independent count first: three sources, shown 3, 2 and 1 times
    assert sorted(usd_placements(tmp_path / "stage.usda").values()) == [1, 2, 3]

    scene = load(tmp_path / "stage.usda")
    placed = world_placements(scene)
    shown = collections.Counter(geometry for geometry, _ in placed.values())
    assert sorted(shown.values()) == [1, 2, 3] and len(scene.trimesh_scene.geometry) == 3
    assert np.allclose(sorted(t[0, 3] for _, t in placed.values()), [1, 2, 3, 4, 5, 6])
    [glb] = save(scene, tmp_path / "stage.glb")
    assert sorted(glb_placements(glb).values()) == [1, 2, 3]


POINT_INSTANCER = """#usda 1.0
(
    metersPerUnit = 1
    upAxis = "Y"
)

def PointInstancer "Scatter"
{
    point3f[] positions = [(1, 0, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0)]
    int[] protoIndices = [0, 1, 0, 0]
    int64[] invisibleIds = [3]
    rel prototypes = [</Scatter/Prototypes/Quad>, </Scatter/Prototypes/Triangle>]

    def Scope "Prototypes"
    {
        token visibility = "invisible"

        def Mesh "Quad"
        {
            double3 xformOp:translate = (0, 10, 0)
            uniform token[] xformOpOrder = ["xformOp:translate"]
            int[] faceVertexCounts = [4]
            int[] faceVertexIndices = [0, 1, 2, 3]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
        }

        def Mesh "Triangle"
        {
            int[] faceVertexCounts = [3]
            int[] faceVertexIndices = [0, 1, 2]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0)]
        }
    }
}
"""


def test_a_point_instancer_places_its_prototypes_once_read_at_every_shown_instance(tmp_path):
    (tmp_path / "scatter.usda").write_text(POINT_INSTANCER)
    scene = load(tmp_path / "scatter.usda")

    placed = world_placements(scene)
    assert set(scene.trimesh_scene.geometry) == {"Quad", "Triangle"}
    # instance 3 is hidden; each prototype keeps its own transform; the prototypes' invisible
    # scope hides them where they are defined, not where they are placed
    where = sorted((geometry, *t[:3, 3]) for geometry, t in placed.values())
    assert where == [("Quad", 1, 10, 0), ("Quad", 3, 10, 0), ("Triangle", 2, 0, 0)]
    [glb] = save(scene, tmp_path / "scatter.glb")
    assert glb_placements(glb) == {"Quad": 2, "Triangle": 1}


def test_decimation_runs_once_per_mesh_and_keeps_the_placements(as1, tmp_path, monkeypatch):
    from tasks.steps import decimate as module

    calls = []
    one_mesh = module._prepare  # each mesh is prepared once for simplification
    monkeypatch.setattr(module, "_prepare", lambda *a: calls.append(a) or one_mesh(*a))
    source = as1.copy()
    faces = {name: len(mesh.faces) for name, mesh in source.trimesh_scene.geometry.items()}
    result = decimate(source.copy(), DecimateOptions(ratio=0.5))

    assert len(calls) == len(AS1_PLACEMENTS)  # 5 meshes, not 18 placements

    assert {n: len(m.faces) < faces[n] for n, m in result.trimesh_scene.geometry.items()} == {
        name: True for name in AS1_PLACEMENTS
    }
    assert_same_placements(source, result)
    [glb] = save(result, tmp_path / "decimated.glb")
    assert glb_placements(glb) == AS1_PLACEMENTS


def test_every_level_of_detail_keeps_the_instances(as1, tmp_path):
    for index, level in enumerate(lods(as1, LodOptions(ratios=(1.0, 0.25)))):
        assert_same_placements(as1, level)
        path = tmp_path / f"lod{index}.glb"
        path.write_bytes(glb_bytes(level))  # what generate_lods writes
        assert glb_placements(path) == AS1_PLACEMENTS
