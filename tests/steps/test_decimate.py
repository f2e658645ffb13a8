"""Decimate: hit the triangle target, stay close to the original surface, keep UVs and normals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps._meshes import topology
from tasks.steps.decimate import FAN_OUT_FROM_TRIANGLES, DecimateOptions, FanOut, decimate
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


def assembly() -> trimesh.Scene:
    """Distinct meshes carrying what decimation must keep: normals, UVs and a material,
    vertex and face colours, one mesh placed twice (scaled), a point cloud."""
    rng = np.random.default_rng(7)
    scene = trimesh.Scene()
    for index, subdivisions in enumerate((2, 3, 3, 4, 4, 5)):
        mesh = bumpy_sphere(subdivisions)
        mesh.vertices *= rng.uniform(0.5, 2)
        _ = mesh.vertex_normals  # carried
        if index == 1:
            mesh.visual.vertex_colors = rng.integers(0, 255, (len(mesh.vertices), 4), np.uint8)
        elif index == 2:
            mesh.visual.face_colors = rng.integers(0, 255, (len(mesh.faces), 4), np.uint8)
        elif index == 3:
            material = trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 20, 20, 255])
            uv = (mesh.vertices[:, :2] - mesh.vertices[:, :2].min(0)) / np.ptp(
                mesh.vertices[:, :2], 0
            )
            mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        place = trimesh.transformations.translation_matrix([index * 5, 0, 0])
        scene.add_geometry(
            mesh, node_name=f"part{index}", geom_name=f"mesh{index}", transform=place
        )
    twice = trimesh.transformations.scale_matrix(3) @ trimesh.transformations.translation_matrix(
        [0, 5, 0]
    )
    scene.graph.update(frame_to="copy", geometry="mesh4", matrix=twice)
    scene.add_geometry(trimesh.PointCloud(rng.random((50, 3))), node_name="points")
    return scene


def assert_same_meshes(a, b):
    one, other = a.trimesh_scene.geometry, b.trimesh_scene.geometry
    assert list(one) == list(other)
    for name, mesh in one.items():
        twin = other[name]
        assert np.array_equal(mesh.vertices, twin.vertices), name
        if not isinstance(mesh, trimesh.Trimesh):
            continue
        assert np.array_equal(mesh.faces, twin.faces), name
        assert np.array_equal(mesh._cache["vertex_normals"], twin._cache["vertex_normals"]), name
        assert type(mesh.visual) is type(twin.visual), name
        if isinstance(mesh.visual, trimesh.visual.TextureVisuals):
            assert np.array_equal(mesh.visual.uv, twin.visual.uv), name
            assert hash(mesh.visual.material) == hash(twin.visual.material), name
        else:
            assert mesh.visual.kind == twin.visual.kind, name
            assert np.array_equal(mesh.visual.vertex_colors, twin.visual.vertex_colors), name
    assert a.warnings == b.warnings


@pytest.mark.parametrize("options", [DecimateOptions(ratio=0.3), DecimateOptions(max_error=1e-3)])
def test_batches_in_child_ray_tasks_give_the_same_meshes_as_one_task(
    ray_cluster, monkeypatch, options
):
    from tasks.processes._pipeline import DecimateStep
    from tasks.steps import decimate as decimate_module
    from tasks.subtasks import SubTasks

    scene = from_trimesh(assembly())
    one_task = decimate(scene.copy(), options)

    # the optimize pipeline's path, with the size threshold lowered to this small scene
    monkeypatch.setattr(
        decimate_module, "FanOut", lambda map, workers: FanOut(map, workers, from_triangles=1)
    )
    events = []
    tasks = SubTasks({"cpu": {"num_cpus": 1}}, "cpu", lambda kind, data: events.append(kind))
    step = DecimateStep(
        step="decimate", ratio=options.ratio, error=options.max_error, lock_border=False
    )
    report = {}
    fanned = step.fan_out(scene.copy(), report, tasks)

    assert report["batches"] >= 2
    assert events.count("child") == report["batches"] - 1  # the first batch stays here
    assert_same_meshes(one_task, fanned)
    assert fanned.triangle_count < 0.7 * scene.triangle_count


def test_a_small_scene_is_decimated_in_one_task(ray_cluster):
    from tasks.processes._pipeline import DecimateStep
    from tasks.subtasks import SubTasks

    events = []
    tasks = SubTasks({"cpu": {"num_cpus": 1}}, "cpu", lambda kind, data: events.append(kind))
    scene = from_trimesh(assembly())
    assert scene.triangle_count < FAN_OUT_FROM_TRIANGLES
    report = {}
    result = DecimateStep(step="decimate", ratio=0.3).fan_out(scene.copy(), report, tasks)

    assert events == [] and "batches" not in report
    assert_same_meshes(decimate(scene.copy(), DecimateOptions(ratio=0.3)), result)


def test_batches_are_balanced_by_triangles_and_keep_every_mesh():
    from tasks.steps.decimate import _balance

    triangles = [81920, 20480, 20480, 5120, 5120, 5120, 1280, 1280, 320]
    groups = _balance(triangles, 3)
    assert sorted(i for group in groups for i in group) == list(range(len(triangles)))
    loads = [sum(triangles[i] for i in group) for group in groups]
    assert max(loads) == 81920  # the biggest mesh alone; the rest share the other two
    assert abs(loads[1] - loads[2]) <= 5120
    assert _balance([10, 10], 5) == [[0], [1]]  # never an empty batch
