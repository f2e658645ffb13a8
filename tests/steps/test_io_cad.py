"""CAD import through OpenCASCADE XCAF: assembly tree, part names, colours, B-rep facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.io import LoadOptions, load, save
from tasks.steps.tessellate import TessellateOptions

DATA = Path(__file__).parents[1] / "data"
AS1 = DATA / "step/as1-oc-214.stp"


def part_name(node: str) -> str:
    """'nut_3' -> 'nut' (placements of one part get numbered node names)."""
    head, _, tail = node.rpartition("_")
    return head if tail.isdigit() else node


def test_as1_assembly_places_18_named_solids():
    scene = load(AS1)
    placed = scene.trimesh_scene.graph.nodes_geometry
    assert len(placed) == 18
    names = sorted(part_name(node) for node in placed)
    assert names == sorted(["plate"] + ["rod"] + ["l-bracket"] * 2 + ["bolt"] * 6 + ["nut"] * 8)
    assert scene.facts["brep_body_count"] == 18
    # closed solids have no free edges
    assert "brep_boundary" not in scene.facts


def test_as1_parts_are_meshed_once_and_placed_many_times():
    scene = load(AS1)
    assert len(scene.trimesh_scene.geometry) == 5
    # the 18 placements are distinct: no two solids sit on the same spot
    centres = {
        tuple(np.round(scene.trimesh_scene.graph[node][0][:3, 3], 3))
        for node in scene.trimesh_scene.graph.nodes_geometry
    }
    assert len(centres) == 18


def test_as1_has_its_five_colours_as_materials():
    scene = load(AS1)
    materials = {
        g.visual.material.name: tuple(g.visual.material.baseColorFactor)
        for g in scene.trimesh_scene.geometry.values()
    }
    assert len(materials) == 5
    nut = scene.trimesh_scene.geometry["nut"].visual.material
    assert tuple(nut.baseColorFactor) == (255, 0, 0, 255)
    assert nut.metallicFactor == 0.0


def test_red_cube_and_blue_cylinder_keep_their_colours():
    scene = load(DATA / "step/red_cube_blue_cylinder.step")
    colours = {
        node: scene.trimesh_scene.geometry[
            scene.trimesh_scene.graph[node][1]
        ].visual.material.baseColorFactor
        for node in scene.trimesh_scene.graph.nodes_geometry
    }
    red, blue = colours["red_cube"], colours["blue_cylinder"]
    assert red[0] > 150 and red[1] < 60 and red[2] < 60
    assert blue[2] > 100 and blue[0] < 40 and blue[1] < 60


def test_colours_and_names_survive_glb(tmp_path):
    [glb] = save(load(AS1), tmp_path / "as1.glb")
    again = load(glb)
    assert again.triangle_count == load(AS1).triangle_count
    assert any(node.startswith("l-bracket") for node in again.trimesh_scene.graph.nodes_geometry)
    colours = {
        tuple(g.visual.material.baseColorFactor) for g in again.trimesh_scene.geometry.values()
    }
    assert len(colours) == 5


def test_presets_trade_triangles_for_accuracy():
    counts = [
        load(AS1, LoadOptions(tessellation=TessellateOptions(preset))).triangle_count
        for preset in ("low", "medium", "high", "very_high")
    ]
    assert counts == sorted(counts) and counts[0] < counts[-1] / 4


def test_iges_surface_model_reports_free_edges():
    scene = load(DATA / "iges/sunglasses_lens.igs")
    assert scene.triangle_count > 0
    assert scene.facts["brep_boundary"] > 0
    assert scene.facts["brep_body_count"] >= 1


def test_brep_file_loads_named_after_the_file(tmp_path):
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox
    from OCP.BRepTools import BRepTools

    path = tmp_path / "block.brep"
    BRepTools.Write_s(BRepPrimAPI_MakeBox(10, 20, 30).Shape(), str(path))
    scene = load(path)
    assert list(scene.trimesh_scene.graph.nodes_geometry) == ["block"]
    # a 10 x 20 x 30 mm box drawn Z-up, in metres and +Y up: its 30 mm height is along Y
    assert scene.trimesh_scene.extents == pytest.approx([0.01, 0.03, 0.02], abs=1e-9)
    assert scene.triangle_count == 12


def test_as1_step_to_glb_end_to_end_keeps_every_triangle(tmp_path):
    # Its speed is bench/geometry.py's business, not a timed test's on a shared machine.
    scene = load(AS1, LoadOptions(tessellation=TessellateOptions("medium")))
    save(scene, tmp_path / "as1.glb")
    glb = trimesh.load(tmp_path / "as1.glb", force="scene")
    assert sum(len(g.faces) for g in glb.dump()) == scene.triangle_count > 0
