"""remove_hidden: what no viewpoint sees goes, what shows from outside stays pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.errors import OptionsError
from tasks.steps.remove_hidden import (
    RemoveHiddenOptions,
    fibonacci_directions,
    remove_hidden,
)
from tasks.steps.render import RenderOptions, render_views
from tasks.steps.scene import Scene, from_trimesh

DATA = Path(__file__).parents[1] / "data"
BOLTS = 500
SHELL_OUTER_FACES = 12
# the tests' viewpoints: 32 directions at 192² keep each run around a second on 2 cores
FAST = {"views": 32, "precision": 192}


def housing_with_bolts(bolts: int = BOLTS, outside: int = 0, seed: int = 0) -> Scene:
    """A closed, hollow box housing (walls 5 cm thick) with ``bolts`` small bolts inside,
    half hex prisms and half round ones, each mesh placed as instances; ``outside`` more
    round bolts stand beside the housing, where they are seen."""
    rng = np.random.default_rng(seed)
    outer = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    inner = trimesh.creation.box(extents=(0.9, 0.5, 0.3))
    inner.invert()  # the cavity's walls face inwards
    shell = trimesh.util.concatenate([outer, inner])
    shell.visual.face_colors = [90, 110, 140, 255]
    hex_bolt = trimesh.creation.cylinder(radius=0.012, height=0.06, sections=6)
    round_bolt = trimesh.creation.cylinder(radius=0.01, height=0.05, sections=16)
    scene = trimesh.Scene()
    scene.add_geometry(shell, geom_name="housing", node_name="housing")
    scene.add_geometry(hex_bolt, geom_name="hex_bolt", node_name="hex_bolt_0")
    scene.add_geometry(round_bolt, geom_name="round_bolt", node_name="round_bolt_0")
    for i in range(bolts):
        transform = trimesh.transformations.random_rotation_matrix(rng.random(3))
        transform[:3, 3] = rng.uniform([-0.4, -0.2, -0.1], [0.4, 0.2, 0.1])
        name = "hex_bolt" if i % 2 == 0 else "round_bolt"
        node = f"{name}_{i // 2}"
        scene.graph.update(frame_to=node, frame_from="world", matrix=transform, geometry=name)
    for i in range(outside):
        transform = np.eye(4)
        transform[:3, 3] = [0.6 + 0.05 * i, 0.0, 0.0]
        scene.graph.update(
            frame_to=f"outside_bolt_{i}",
            frame_from="world",
            matrix=transform,
            geometry="round_bolt",
        )
    return from_trimesh(scene, source_name="housing")


def bolt_triangles(scene: Scene) -> int:
    return scene.triangle_count - len(scene.trimesh_scene.geometry["housing"].faces)


@pytest.fixture(scope="module")
def housing_triangles() -> tuple[int, int]:
    scene = housing_with_bolts()
    return scene.triangle_count, bolt_triangles(scene)


# -- the generated housing ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["gl", "embree"])
def test_parts_inside_a_closed_housing_are_removed_and_the_housing_kept_whole(
    backend, housing_triangles
):
    scene = housing_with_bolts()
    shell = scene.trimesh_scene.geometry["housing"].copy()
    report: dict = {}

    result = remove_hidden(scene, RemoveHiddenOptions(backend=backend, **FAST), report)

    # 100 % of the shell is kept, every bolt removed
    assert np.array_equal(result.trimesh_scene.geometry["housing"].faces, shell.faces)
    assert report["parts_removed"] == BOLTS
    assert report["triangles_before"] == housing_triangles[0]
    assert report["triangles_after"] == len(shell.faces) == result.triangle_count
    assert report["views"] == 32 and report["backend"] == backend
    assert len(report["removed_parts"]) == 50  # the names, capped
    assert all(name.startswith(("hex_bolt", "round_bolt")) for name in report["removed_parts"])
    # no bolt mesh is left unplaced in the scene, no empty node stays behind
    assert set(result.trimesh_scene.geometry) == {"housing"}
    assert set(result.trimesh_scene.graph.nodes) == {"world", "housing"}


@pytest.mark.parametrize("backend", ["gl", "embree"])
def test_triangle_level_keeps_every_outer_face_and_drops_the_cavity_walls(backend):
    scene = housing_with_bolts(outside=2)
    report: dict = {}

    result = remove_hidden(
        scene, RemoveHiddenOptions(level="triangle", backend=backend, **FAST), report
    )

    housing = result.trimesh_scene.geometry["housing"]
    outer = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    # the outer box's 12 triangles are all there, the inner 12 are gone
    assert len(housing.faces) == SHELL_OUTER_FACES
    assert np.allclose(np.sort(housing.bounds, axis=0), np.sort(outer.bounds, axis=0))
    assert housing.area == pytest.approx(outer.area)
    # >= 95 % of the bolts' triangles removed (here every inner bolt)
    bolts_after = bolt_triangles(result)
    assert bolts_after <= 0.05 * bolt_triangles(housing_with_bolts(outside=2))
    # the two bolts outside are seen, so the round bolt mesh stays, placed twice
    assert "round_bolt" in result.trimesh_scene.geometry
    assert report["parts_removed"] == BOLTS
    assert bolts_after <= 2 * len(housing_with_bolts(1).trimesh_scene.geometry["round_bolt"].faces)


def test_mesh_level_keeps_a_mesh_that_one_placement_shows():
    scene = housing_with_bolts(outside=1)
    report: dict = {}

    result = remove_hidden(scene, RemoveHiddenOptions(level="mesh", **FAST), report)

    geometry = result.trimesh_scene.geometry
    assert set(geometry) == {"housing", "round_bolt"}  # hex bolts: never seen anywhere
    nodes = result.trimesh_scene.graph.nodes_geometry
    assert sum(1 for n in nodes if result.trimesh_scene.graph[n][1] == "round_bolt") == 251
    assert report["parts_removed"] == BOLTS // 2


def test_part_level_removes_only_the_unseen_placements_of_a_shared_mesh():
    scene = housing_with_bolts(outside=3)

    result = remove_hidden(scene, RemoveHiddenOptions(**FAST))

    graph = result.trimesh_scene.graph
    assert sorted(graph.nodes_geometry) == [
        "housing",
        "outside_bolt_0",
        "outside_bolt_1",
        "outside_bolt_2",
    ]


def test_a_view_from_inside_the_cavity_keeps_what_it_sees():
    scene = housing_with_bolts(bolts=40)
    report: dict = {}

    remove_hidden(scene, RemoveHiddenOptions(interior_points=((0.0, 0.0, 0.0),), **FAST), report)

    # from the centre most bolts are in plain sight (some hide behind others)
    assert report["parts_removed"] < 20
    assert report["views"] == 32 + 6


def test_bolts_behind_a_transparent_housing_stay():
    scene = housing_with_bolts(bolts=20)
    shell = scene.trimesh_scene.geometry["housing"]
    shell.visual.face_colors = [90, 110, 140, 100]
    report: dict = {}

    remove_hidden(scene, RemoveHiddenOptions(**FAST), report)

    assert report["parts_removed"] <= 2  # a bolt may hide behind another
    assert report["triangles_after"] >= 0.8 * report["triangles_before"]


def test_both_backends_see_the_same_triangles():
    scene = from_trimesh(trimesh.load(DATA / "glb" / "CesiumMilkTruck.glb"))
    counts = {}
    for backend in ("gl", "embree"):
        report: dict = {}
        remove_hidden(
            scene.copy(), RemoveHiddenOptions(level="triangle", backend=backend, **FAST), report
        )
        counts[backend] = report["triangles_after"]
    # pixel centres are the same rays; rasterisation rules differ only on shared edges
    assert counts["gl"] == pytest.approx(counts["embree"], rel=0.01)
    assert counts["gl"] < report["triangles_before"]


def test_auto_names_the_backend_it_used():
    report: dict = {}
    remove_hidden(housing_with_bolts(bolts=10), RemoveHiddenOptions(**FAST), report)
    assert report["backend"] in ("gl", "embree")


def test_fibonacci_directions_cover_the_sphere_evenly():
    directions = fibonacci_directions(64)
    assert np.allclose(np.linalg.norm(directions, axis=1), 1)
    assert np.allclose(directions.mean(axis=0), 0, atol=0.02)
    # every direction on the sphere is within 20 degrees of a view
    probes = trimesh.sample.sample_surface_sphere(2000)
    nearest = np.degrees(np.arccos(np.clip((probes @ directions.T).max(axis=1), -1, 1)))
    assert nearest.max() < 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RemoveHiddenOptions(level="patch"), "level must be one of"),
        (RemoveHiddenOptions(backend="optix"), "backend must be one of"),
        (RemoveHiddenOptions(precision=8), "precision must be 16..4096"),
        (RemoveHiddenOptions(views=0), "views must be 1..4096"),
        (RemoveHiddenOptions(interior_points=((0, 0),)), "is not an"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(OptionsError, match=message):
        remove_hidden(housing_with_bolts(bolts=2), options)


# -- a real assembly ------------------------------------------------------------------


@pytest.fixture(scope="module")
def as1() -> Scene:
    from tasks.steps.io import load

    return load(DATA / "step" / "as1-oc-214.stp")


def mean_abs_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def test_a_real_assembly_looks_the_same_from_outside_after_removal(as1):
    before = as1.copy()
    # a hidden part for certain: a pin sunk into the middle of the base plate
    plate = max(before.trimesh_scene.geometry.items(), key=lambda item: item[1].volume)[0]
    plate_node = before.trimesh_scene.graph.geometry_nodes[plate][0]
    plate_bounds = before.trimesh_scene.geometry[plate].bounds
    transform = before.trimesh_scene.graph[plate_node][
        0
    ] @ trimesh.transformations.translation_matrix(plate_bounds.mean(axis=0))
    pin = trimesh.creation.box(extents=np.ptp(plate_bounds, axis=0).min() * 0.3 * np.ones(3))
    before.trimesh_scene.add_geometry(
        pin, geom_name="pin", node_name="hidden_pin", transform=transform
    )
    report: dict = {}

    after = remove_hidden(before.copy(), RemoveHiddenOptions(**FAST), report)

    assert "hidden_pin" in report["removed_parts"]
    assert report["parts_removed"] == len(report["removed_parts"])
    kept = set(after.trimesh_scene.graph.nodes_geometry)
    assert not kept & set(report["removed_parts"])
    assert kept | set(report["removed_parts"]) == set(before.trimesh_scene.graph.nodes_geometry)
    # the thumbnails do not change
    options = RenderOptions(width=192, height=192, up_axis="y")
    images = render_views(after, options)
    for view, image in render_views(before, options).items():
        assert mean_abs_difference(image, images[view]) < 1.0, view


def test_triangle_level_on_a_real_assembly_drops_what_hides_in_its_holes(as1):
    report: dict = {}

    after = remove_hidden(as1.copy(), RemoveHiddenOptions(level="triangle", **FAST), report)

    # bolt shanks inside their holes, nut bores, hole walls behind the bolts: half of it
    assert report["parts_removed"] == 0
    assert report["triangles_after"] < 0.6 * report["triangles_before"]
    options = RenderOptions(width=192, height=192, up_axis="y")
    images = render_views(after, options)
    for view, image in render_views(as1, options).items():
        assert mean_abs_difference(image, images[view]) < 0.05, view
