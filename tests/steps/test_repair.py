"""Repair: broken meshes come out welded, consistently oriented and, where holes are small, closed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps._meshes import topology
from tasks.steps.errors import OptionsError
from tasks.steps.repair import RepairOptions, repair, repair_mesh
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).parents[1] / "data"


def soup(mesh: trimesh.Trimesh, duplicates: int = 20, seed: int = 0) -> trimesh.Trimesh:
    """``mesh`` as an STL-like soup: every face its own three vertices, a third of them
    wound backwards, ``duplicates`` faces listed twice and 8 isolated faces missing."""
    rng = np.random.default_rng(seed)
    # holes far apart (no shared vertex), so each is a simple triangle-shaped rim
    missing: list[int] = []
    used: set[int] = set()
    for face in rng.permutation(len(mesh.faces)):
        if len(missing) == 8:
            break
        if not used & set(mesh.faces[face]):
            missing.append(face)
            used |= set(mesh.faces[face])
    keep = np.setdiff1d(np.arange(len(mesh.faces)), missing)
    triangles = mesh.vertices[mesh.faces[keep]]
    backwards = rng.random(len(triangles)) < 1 / 3
    triangles[backwards] = triangles[backwards, ::-1]
    triangles = np.concatenate([triangles, triangles[:duplicates]])
    return trimesh.Trimesh(
        triangles.reshape(-1, 3), np.arange(3 * len(triangles)).reshape(-1, 3), process=False
    )


def test_non_manifold_stl_gets_closed_and_consistently_wound():
    mesh = trimesh.load(DATA / "stl/Spider_ascii.stl")
    before = topology(mesh)
    assert (before.boundary_edges, before.non_manifold_edges) == (72, 20)
    assert not mesh.is_winding_consistent

    scene = repair(from_trimesh(mesh))

    [repaired] = scene.trimesh_scene.geometry.values()
    after = topology(repaired)
    assert after.boundary_edges < before.boundary_edges
    assert after.non_manifold_edges == 0
    assert repaired.is_winding_consistent
    # every closed piece faces outward
    for piece in repaired.split(only_watertight=True):
        assert piece.volume > 0


def test_triangle_soup_with_holes_becomes_the_closed_solid_again():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    broken = soup(sphere)
    assert topology(broken).boundary_edges == 8 * 3

    report = repair_mesh(broken)

    assert broken.is_watertight
    assert broken.is_winding_consistent
    assert len(broken.vertices) == len(sphere.vertices)
    assert len(broken.faces) == len(sphere.faces)
    assert broken.volume == pytest.approx(sphere.volume, rel=1e-9)
    assert (report.duplicate_faces, report.filled_holes, report.added_faces) == (20, 8, 8)
    assert report.boundary_edges_after == 0


def test_sphere_missing_one_face_is_watertight_again():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    volume = sphere.volume
    sphere.update_faces(np.arange(len(sphere.faces)) != 17)
    assert not sphere.is_watertight

    scene = repair(from_trimesh(sphere))

    [repaired] = scene.trimesh_scene.geometry.values()
    assert repaired.is_watertight
    assert repaired.volume == pytest.approx(volume, rel=1e-9)


def test_weld_keeps_uv_seams_and_their_texture_coordinates():
    mesh = trimesh.load(DATA / "obj/fuze/fuze.obj")
    corners_before = _corner_keys(mesh)
    split = soup_with_uv(mesh)

    report = repair_mesh(split)

    # welded back exactly to the vertices the file had: seams stay split
    assert len(split.vertices) == len(mesh.vertices)
    assert split.visual.uv.shape == (len(split.vertices), 2)
    assert _corner_keys(split) == corners_before
    assert report.added_faces == 0


def test_flat_sheet_stays_open():
    sheet = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    report = repair_mesh(sheet)
    assert len(sheet.faces) == 2
    assert report.boundary_edges_after == 4


def test_open_box_is_capped_only_when_asked_to_fill_holes():
    box = trimesh.creation.box()
    top = box.face_normals[:, 2] > 0.5
    open_box = box.copy()
    open_box.update_faces(~top)

    kept = open_box.copy()
    repair_mesh(kept, RepairOptions(fill_holes=False))
    assert topology(kept).boundary_edges == 4

    repair_mesh(open_box)
    assert open_box.is_watertight
    assert open_box.volume == pytest.approx(1.0)


def test_logs_before_and_after_counts(caplog):
    with caplog.at_level(logging.DEBUG, logger="tasks.steps.repair"):
        repair(from_trimesh(soup(trimesh.creation.icosphere(subdivisions=2), duplicates=0)))
    assert "boundary edges 24 -> 0" in caplog.text


def test_point_clouds_are_skipped_with_a_warning():
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.PointCloud(np.random.rand(10, 3))])
    repaired = repair(from_trimesh(scene))
    assert repaired.warnings == ["repair: skipped 1 geometries that are not triangle meshes"]


def test_bad_options_are_refused_with_a_readable_error():
    with pytest.raises(OptionsError, match="weld_tolerance must be in"):
        repair(from_trimesh(trimesh.creation.box()), RepairOptions(weld_tolerance=-1))


def soup_with_uv(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Every face with its own vertices, each carrying its UV."""
    corners = mesh.faces.ravel()
    return trimesh.Trimesh(
        mesh.vertices[corners],
        np.arange(len(corners)).reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=mesh.visual.uv[corners]),
        process=False,
    )


def _corner_keys(mesh: trimesh.Trimesh) -> list:
    """Per face, its corners' (position, uv) as a sorted tuple; sorted over faces."""
    keys = np.round(np.hstack([mesh.vertices, mesh.visual.uv])[mesh.faces], 9)
    return sorted(tuple(sorted(map(tuple, face))) for face in keys)
