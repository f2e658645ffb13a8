"""Decimate: hit the triangle target, stay close to the original surface, keep UVs and normals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps._meshes import topology
from tasks.steps.decimate import DecimateOptions, decimate
from tasks.steps.errors import OptionsError
from tasks.steps.hausdorff import hausdorff_distance
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).parents[1] / "data"


def bumpy_sphere(subdivisions: int) -> trimesh.Trimesh:
    """A closed, smoothly bumpy sphere of 20·4^n triangles (n=8: 1,310,720)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    x, y, z = sphere.vertices.T
    radius = 1 + 0.03 * np.sin(7 * x) * np.sin(6 * y) * np.sin(5 * z)
    return trimesh.Trimesh(sphere.vertices * radius[:, None], sphere.faces, process=False)


def diagonal(mesh: trimesh.Trimesh) -> float:
    return float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))


def only_mesh(scene) -> trimesh.Trimesh:
    [mesh] = scene.trimesh_scene.geometry.values()
    return mesh


def test_a_million_triangles_to_ten_percent_stays_within_4e_4_of_the_diagonal():
    mesh = bumpy_sphere(8)
    assert len(mesh.faces) >= 1_000_000

    result = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(ratio=0.1)))

    target = len(mesh.faces) // 10
    assert abs(len(result.faces) - target) <= 0.1 * target
    # symmetric Hausdorff: every vertex plus 50k area samples per side, exact
    # point-to-triangle distances (see tasks/steps/hausdorff.py)
    assert hausdorff_distance(mesh, result, samples=50_000) <= 4e-4 * diagonal(mesh)
    assert result.is_watertight  # its speed: bench/geometry.py


def test_triangle_budget_is_shared_over_the_parts():
    scene = from_trimesh(trimesh.load(DATA / "3mf/cube_gears.3mf"))
    parts_before = {n: len(g.faces) for n, g in scene.trimesh_scene.geometry.items()}
    assert scene.triangle_count == 25692

    result = decimate(scene, DecimateOptions(triangles=5000))

    assert abs(result.triangle_count - 5000) <= 500
    # every gear gave up about the same share
    for name, mesh in result.trimesh_scene.geometry.items():
        assert len(mesh.faces) / parts_before[name] == pytest.approx(5000 / 25692, abs=0.05)


def test_textured_mesh_keeps_its_uvs_and_normals():
    mesh = trimesh.load(DATA / "obj/fuze/fuze.obj")
    low, high = mesh.visual.uv.min(axis=0), mesh.visual.uv.max(axis=0)
    assert mesh._cache["vertex_normals"] is not None

    result = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(ratio=0.1)))

    assert 80 <= len(result.faces) <= 120
    uv = result.visual.uv
    assert uv.shape == (len(result.vertices), 2)
    assert (uv >= low - 1e-9).all() and (uv <= high + 1e-9).all()

    # each kept vertex is one of the original's, with its own UV and normal
    def rows(m, normals):
        return {tuple(r) for r in np.round(np.hstack([m.vertices, m.visual.uv, normals]), 6)}

    kept = rows(result, result._cache["vertex_normals"])
    assert kept <= rows(mesh, mesh.vertex_normals)
    assert len(kept) == len(result.vertices)
    assert result.visual.material.image is not None


def test_uv_seams_do_not_tear_open():
    """A UV seam is an edge whose vertices are split: torn, its edges would become boundary."""
    mesh = trimesh.load(DATA / "glb/CesiumMilkTruck.glb").geometry["Cesium_Milk_Truck"]
    seams = len(mesh.vertices) - len(np.unique(mesh.vertices, axis=0))
    assert seams > 500

    result = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(ratio=0.25)))

    # counted on positions, as a viewer sees the surface
    assert topology(result).boundary_edges <= topology(mesh).boundary_edges
    assert len(result.faces) < 0.35 * len(mesh.faces)


def test_max_error_alone_simplifies_as_far_as_it_allows():
    mesh = bumpy_sphere(6)
    coarse = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(max_error=1e-2)))
    fine = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(max_error=1e-3)))
    assert len(coarse.faces) < len(fine.faces) < len(mesh.faces) / 4
    # meshoptimizer's error is a quadric estimate, not a bound: within 5x (documented)
    assert hausdorff_distance(mesh, fine, samples=20_000) < 5e-3 * diagonal(mesh)


def test_preview_is_quick_and_near_the_target():
    mesh = bumpy_sphere(7)
    result = only_mesh(decimate(from_trimesh(mesh), DecimateOptions(ratio=0.1, preview=True)))
    target = len(mesh.faces) // 10
    assert abs(len(result.faces) - target) <= 0.1 * target


def test_a_mesh_placed_twice_is_decimated_once_and_counted_twice():
    sphere = bumpy_sphere(4)
    scene = trimesh.Scene()
    scene.add_geometry(sphere, node_name="a", geom_name="ball")
    shifted = trimesh.transformations.translation_matrix([3, 0, 0])
    scene.graph.update(frame_to="b", geometry="ball", matrix=shifted)
    result = decimate(from_trimesh(scene), DecimateOptions(triangles=2 * 1000))
    assert list(result.trimesh_scene.geometry) == ["ball"]
    assert abs(result.triangle_count - 2000) <= 200


def test_the_input_mesh_is_not_modified():
    mesh = bumpy_sphere(4)
    faces = mesh.faces.copy()
    decimate(from_trimesh(mesh), DecimateOptions(ratio=0.2))
    assert np.array_equal(mesh.faces, faces)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DecimateOptions(ratio=0.5, triangles=10), "either ratio or triangles"),
        (DecimateOptions(ratio=0), r"ratio must be in \(0, 1\]"),
        (DecimateOptions(triangles=0), "triangles must be at least 1"),
        (DecimateOptions(max_error=-1), "max_error must be >= 0"),
    ],
)
def test_bad_options_are_refused_with_a_readable_error(options, message):
    with pytest.raises(OptionsError, match=message):
        decimate(from_trimesh(trimesh.creation.box()), options)
