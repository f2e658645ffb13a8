"""Merge: one mesh per material (or one for all), placements baked, nothing lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.errors import OptionsError
from tasks.steps.merge import MergeOptions, merge
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture()
def truck():
    """CesiumMilkTruck: 4 materials, the wheels mesh placed twice, 3,624 placed triangles."""
    return from_trimesh(trimesh.load(DATA / "glb/CesiumMilkTruck.glb"))


def test_by_material_gives_one_mesh_per_material_named_after_it(truck):
    bounds = truck.trimesh_scene.bounds
    assert truck.triangle_count == 3624

    merged = merge(truck)

    graph = merged.trimesh_scene.graph
    assert sorted(graph.nodes_geometry) == ["glass", "truck", "wheels", "window_trim"]
    for node in graph.nodes_geometry:
        transform, _ = graph[node]
        assert np.allclose(transform, np.eye(4))
    # both wheel placements baked in: the count and the extent are unchanged
    assert merged.triangle_count == 3624
    assert len(merged.trimesh_scene.geometry["wheels"].faces) == 2 * 768
    assert np.allclose(merged.trimesh_scene.bounds, bounds)


def test_textures_and_normals_survive_by_material(truck):
    merged = merge(truck)
    body = merged.trimesh_scene.geometry["truck"]
    assert body.visual.material.name == "truck"
    assert body.visual.uv.shape == (len(body.vertices), 2)
    assert body.visual.material.baseColorTexture is not None
    assert body._cache["vertex_normals"] is not None


def test_all_gives_one_mesh_named_merged(truck):
    bounds = truck.trimesh_scene.bounds
    merged = merge(truck, MergeOptions(mode="all"))
    assert list(merged.trimesh_scene.graph.nodes_geometry) == ["merged"]
    assert merged.triangle_count == 3624
    assert np.allclose(merged.trimesh_scene.bounds, bounds)


def test_a_mesh_placed_twice_is_baked_twice_at_its_places():
    box = trimesh.creation.box()
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="left", geom_name="box")
    scene.add_geometry(
        box,
        node_name="right",
        geom_name="box",
        transform=trimesh.transformations.translation_matrix([10, 0, 0]),
    )

    merged = merge(from_trimesh(scene))

    [mesh] = merged.trimesh_scene.geometry.values()
    assert list(merged.trimesh_scene.graph.nodes_geometry) == ["default"]
    assert len(mesh.faces) == 24
    assert np.allclose(mesh.bounds, [[-0.5, -0.5, -0.5], [10.5, 0.5, 0.5]])
    assert mesh.volume == pytest.approx(2.0)


def test_a_mirrored_placement_still_faces_outward():
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.icosphere(), transform=np.diag([-1.0, 1, 1, 1]))
    [mesh] = merge(from_trimesh(scene)).trimesh_scene.geometry.values()
    assert mesh.volume > 0


def test_point_clouds_stay_unmerged_with_a_warning():
    points = trimesh.PointCloud(np.random.default_rng(0).random((50, 3)))
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(), points])

    merged = merge(from_trimesh(scene))

    kinds = sorted(type(g).__name__ for g in merged.trimesh_scene.geometry.values())
    assert kinds == ["PointCloud", "Trimesh"]
    assert merged.warnings == ["merge: kept 1 placed geometries that are not meshes unmerged"]


def test_unknown_mode_is_refused_with_a_readable_error(truck):
    with pytest.raises(OptionsError, match="mode must be one of by_material, all"):
        merge(truck, MergeOptions(mode="by_colour"))
