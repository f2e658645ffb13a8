"""find_instances: meshes that are one shape moved about become one mesh placed N times, and
every placement stays where it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tasks.steps._meshes import placements
from tasks.steps.errors import OptionsError
from tasks.steps.find_instances import FindInstancesOptions, find_instances
from tasks.steps.io import load
from tasks.steps.scene import Scene, from_trimesh

DATA = Path(__file__).parents[1] / "data"
AS1 = DATA / "step/as1-oc-214.stp"
WUSON = DATA / "off/Wuson.off"


def rigid(rng) -> np.ndarray:
    motion = np.eye(4)
    motion[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    motion[:3, 3] = rng.uniform(-5, 5, 3)
    return motion


def baked(mesh: trimesh.Trimesh, motion: np.ndarray) -> trimesh.Trimesh:
    copy = mesh.copy()
    copy.apply_transform(motion)
    return copy


def world_vertices(scene: Scene) -> dict[str, np.ndarray]:
    """{node: its mesh's vertices where the scene shows them}."""
    return {
        p.node: p.geometry.vertices @ p.transform[:3, :3].T + p.transform[:3, 3]
        for p in placements(scene.trimesh_scene)
    }


def scene_of(meshes: list[trimesh.Trimesh]) -> Scene:
    scene = trimesh.Scene()
    for index, mesh in enumerate(meshes):
        scene.add_geometry(mesh, geom_name=f"mesh_{index}", node_name=f"node_{index}")
    return from_trimesh(scene)


def assert_same_places(before: dict, after: dict, tolerance: float) -> None:
    """Every node shows its vertices where it did (as a set: a symmetric part may be
    placed by any of its symmetries)."""
    assert before.keys() == after.keys()
    for node, vertices in before.items():
        assert cKDTree(vertices).query(after[node])[0].max() <= tolerance, node
        assert cKDTree(after[node]).query(vertices)[0].max() <= tolerance, node


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda: load(WUSON).trimesh_scene.dump(concatenate=True), id="wuson"),
        # turned about their axis of symmetry, the principal axes say nothing
        pytest.param(lambda: trimesh.creation.cylinder(radius=1, height=4, sections=24), id="bolt"),
        pytest.param(lambda: trimesh.creation.box((2, 2, 2)), id="cube"),
        pytest.param(lambda: trimesh.creation.annulus(1, 2, 0.5, sections=12), id="washer"),
    ],
)
def test_copies_moved_at_random_become_one_mesh_placed_where_they_were(shape):
    rng = np.random.default_rng(7)
    mesh = shape()
    scene = scene_of([baked(mesh, rigid(rng)) for _ in range(6)])
    before = world_vertices(scene)
    report: dict = {}

    find_instances(scene, report=report)

    assert len(scene.trimesh_scene.geometry) == 1
    assert report["instances_found"] == 5
    assert report["meshes_before"] == 6 and report["meshes_after"] == 1
    assert report["triangles_stored_before"] == 6 * report["triangles_stored_after"]
    assert report["bytes_stored_after"] * 6 == report["bytes_stored_before"]
    assert_same_places(before, world_vertices(scene), 1e-6 * mesh.scale)


def test_mirror_images_scaled_copies_and_other_materials_stay_apart():
    mesh = load(WUSON).trimesh_scene.dump(concatenate=True)
    mirror = np.diag([-1.0, 1, 1, 1])
    red = mesh.copy()
    red.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 0, 0, 255])
    )
    scene = scene_of(
        [mesh, baked(mesh, rigid(np.random.default_rng(1))), baked(mesh, mirror)]
        + [baked(mesh, np.diag([1.01, 1.01, 1.01, 1])), red]
    )
    report: dict = {}
    find_instances(scene, report=report)
    assert report["instances_found"] == 1
    assert sorted(scene.trimesh_scene.geometry) == ["mesh_0", "mesh_2", "mesh_3", "mesh_4"]


def test_a_copy_a_little_off_is_kept_unless_the_tolerance_allows_it():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(3)
    noisy = baked(mesh, rigid(rng))
    noisy.vertices += rng.normal(scale=1e-3, size=noisy.vertices.shape)
    assert find_instances(scene_of([mesh, noisy])).trimesh_scene.geometry.keys() == {
        "mesh_0",
        "mesh_1",
    }
    loose = find_instances(scene_of([mesh, noisy]), FindInstancesOptions(tolerance=3e-3))
    assert list(loose.trimesh_scene.geometry) == ["mesh_0"]


def test_as1_baked_placement_by_placement_gets_its_five_parts_back():
    scene = load(AS1)
    shared = {name: len(mesh.faces) for name, mesh in scene.trimesh_scene.geometry.items()}
    flat = trimesh.Scene()
    for p in placements(scene.trimesh_scene):
        flat.add_geometry(baked(p.geometry, p.transform), geom_name=p.node, node_name=p.node)
    flat = from_trimesh(flat)
    before = world_vertices(flat)
    report: dict = {}

    find_instances(flat, report=report)

    assert report["meshes_before"] == 18 and report["meshes_after"] == len(shared) == 5
    assert report["instances_found"] == 13
    assert report["triangles_stored_after"] == sum(shared.values())
    assert report["bytes_stored_after"] < 0.5 * report["bytes_stored_before"]
    assert sorted(len(m.faces) for m in flat.trimesh_scene.geometry.values()) == sorted(
        shared.values()
    )
    assert_same_places(before, world_vertices(flat), 1e-9)
    assert flat.triangle_count == scene.triangle_count


def test_a_node_with_children_keeps_them_in_place():
    mesh = trimesh.creation.box((1, 2, 3))
    motion = rigid(np.random.default_rng(5))
    tree = trimesh.Scene()
    tree.add_geometry(mesh, geom_name="a", node_name="a")
    tree.add_geometry(baked(mesh, motion), geom_name="b", node_name="b")
    tree.add_geometry(
        trimesh.creation.icosphere(), geom_name="c", node_name="c", parent_node_name="b"
    )
    scene = from_trimesh(tree)
    before = world_vertices(scene)
    find_instances(scene)
    after = world_vertices(scene)
    assert set(scene.trimesh_scene.geometry) == {"a", "c"}
    assert np.allclose(after["c"], before["c"])
    [moved] = [node for node in after if node not in ("a", "c")]
    assert cKDTree(before["b"]).query(after[moved])[0].max() < 1e-9


def test_bad_options_are_option_errors():
    scene = scene_of([trimesh.creation.box()])
    with pytest.raises(OptionsError, match="tolerance must be > 0"):
        find_instances(scene, FindInstancesOptions(tolerance=0))
