"""Metadata: the sixteen counts clients read, plus measures, as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.metadata import MetadataOptions, metadata
from tasks.steps.scene import from_trimesh

from conftest import METADATA_KEYS

DATA = Path(__file__).parents[1] / "data"


def described(path: str, **load) -> dict:
    result = metadata(from_trimesh(trimesh.load(DATA / path, **load)))
    # what clients receive: it must survive JSON as it is
    assert json.loads(json.dumps(result)) == result
    return result


def test_the_sixteen_keys_come_first_then_the_measures():
    result = described("off/Wuson.off")
    assert list(result)[:16] == list(METADATA_KEYS)
    assert {"bounding_box", "area", "volume", "watertight", "point_count", "parts"} <= set(result)


def test_cycloidal_gear_counts():
    result = described("ply/cycloidal.ply")
    mesh = trimesh.load(DATA / "ply/cycloidal.ply")
    assert result["polygon_count"] == 43368
    assert result["mesh_vertex_count"] == 21384
    assert result["part_count"] == 1
    # no split vertices here, so trimesh's own edge count agrees
    assert result["mesh_edge_count"] == len(mesh.edges_unique) == 64810
    assert result["mesh_boundary"] == 0
    assert result["aabb"] == pytest.approx(np.linalg.norm(mesh.extents))


def test_wuson_counts_as_in_the_file():
    result = described("off/Wuson.off", process=False)
    assert (result["polygon_count"], result["mesh_vertex_count"]) == (3732, 3205)
    assert result["material_count"] == 0


def test_multi_part_3mf_has_a_row_per_part():
    result = described("3mf/cube_gears.3mf")
    assert result["part_count"] == 17
    assert result["polygon_count"] == 25692
    parts = result["parts"]
    assert len(parts) == 17
    assert sum(part["triangles"] for part in parts) == 25692
    names = {f"gear {i}" for i in range(1, 18) if i != 7} | {"cube 7"}
    assert {part["name"] for part in parts} == names
    # two gears have edges shared by four faces: not watertight, so no volume
    assert sorted(p["name"] for p in parts if not p["watertight"]) == ["gear 5", "gear 8"]
    assert result["volume"] is None
    low, high = np.array(result["bounding_box"]["min"]), np.array(result["bounding_box"]["max"])
    assert result["aabb"] == pytest.approx(np.linalg.norm(high - low))


def test_materials_and_instances_of_a_gltf():
    result = described("glb/CesiumMilkTruck.glb")
    assert result["material_count"] == 4
    assert result["part_count"] == 5  # the wheels are placed twice
    assert result["polygon_count"] == 3624
    assert {part["material"] for part in result["parts"]} == {
        "truck",
        "glass",
        "window_trim",
        "wheels",
    }


def test_closed_boxes_give_area_volume_and_edges():
    box = trimesh.creation.box()
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="one", geom_name="box")
    placed = trimesh.transformations.translation_matrix([3, 0, 0]) @ np.diag([2.0, 2, 2, 1])
    scene.graph.update(frame_to="two", geometry="box", matrix=placed)

    result = metadata(from_trimesh(scene))

    assert result["part_count"] == 2
    assert result["polygon_count"] == 24
    assert result["mesh_vertex_count"] == 16
    assert result["mesh_edge_count"] == 36
    assert result["mesh_boundary"] == 0
    assert result["watertight"] is True
    assert result["volume"] == pytest.approx(1 + 8)
    assert result["area"] == pytest.approx(6 + 24)
    assert result["bounding_box"] == {
        "min": [-0.5, -1.0, -1.0],
        "max": [4.0, 1.0, 1.0],
        "size": [4.5, 2.0, 2.0],
    }


def test_an_open_mesh_counts_its_boundary_and_has_no_volume():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    sphere.update_faces(np.arange(len(sphere.faces)) != 0)
    result = metadata(from_trimesh(sphere))
    assert result["mesh_boundary"] == 3
    assert result["watertight"] is False
    assert result["volume"] is None


def test_cad_counts_come_from_the_facts():
    scene = from_trimesh(trimesh.creation.box())
    scene.facts = {"brep_body_count": np.int64(18), "pmi_component_count": 46, "brep_boundary": 4}
    result = metadata(scene)
    json.dumps(result)
    assert (result["brep_body_count"], result["pmi_component_count"]) == (18, 46)
    assert result["brep_boundary"] == 4
    assert result["variant_count"] == result["animation_count"] == 0


def test_point_clouds_count_points_not_parts():
    points = np.random.default_rng(0).random((500, 3))
    result = metadata(from_trimesh(trimesh.PointCloud(points)))
    assert result["point_count"] == 500
    assert result["part_count"] == result["polygon_count"] == 0
    assert result["aabb"] == pytest.approx(np.linalg.norm(np.ptp(points, axis=0)))


def test_empty_scene_and_no_parts_table():
    result = metadata(from_trimesh(trimesh.Scene()), MetadataOptions(parts=False))
    assert result["aabb"] == 0.0
    assert result["bounding_box"] is None
    assert "parts" not in result
