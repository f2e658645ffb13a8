"""generate_uvs: meshes without texture coordinates get an xatlas unwrap in [0, 1] with little
stretch, meshes with them keep theirs, and the new UVs survive decimation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from tasks.steps.decimate import DecimateOptions, decimate
from tasks.steps.errors import OptionsError
from tasks.steps.generate_uvs import GenerateUvsOptions, generate_uvs
from tasks.steps.io import load
from tasks.steps.repair import repair
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).parents[1] / "data"
WUSON = DATA / "off/Wuson.off"
FUZE = DATA / "obj/fuze/fuze.obj"


def only_mesh(scene) -> trimesh.Trimesh:
    [mesh] = scene.trimesh_scene.geometry.values()
    return mesh


def stretch(mesh: trimesh.Trimesh) -> float:
    """Sander et al.'s L2 stretch of the 3D -> UV map, area-weighted, 1 for an isometry up
    to scale (the map is first scaled so UV and surface areas agree)."""
    corners = mesh.vertices[mesh.faces]
    uv = mesh.visual.uv[mesh.faces]
    uv_area = 0.5 * np.abs(np.cross(uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]))
    area = mesh.area_faces
    keep = (area > 0) & (uv_area > 1e-14)
    scale = np.sqrt(uv_area[keep].sum() / area[keep].sum())
    # per triangle: the surface in a 2D frame of its own, then the Jacobian to UV
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    x = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    y = np.cross(np.cross(e1, e2), e1)
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-30)
    surface = np.stack(
        [
            np.stack([(e1 * x).sum(1), (e1 * y).sum(1)], 1),
            np.stack([(e2 * x).sum(1), (e2 * y).sum(1)], 1),
        ],
        1,
    )
    texture = np.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], 1)
    jacobian = np.linalg.solve(surface[keep], texture[keep]) / scale
    singular = np.linalg.svd(jacobian, compute_uv=False)
    per_triangle = np.sqrt((singular**2).sum(axis=1) / 2)
    return float(np.sqrt((per_triangle**2 * area[keep]).sum() / area[keep].sum()))


def test_a_mesh_without_uvs_gets_uvs_in_the_unit_square_with_low_stretch():
    scene = load(WUSON)
    original = only_mesh(scene).copy()
    assert getattr(original.visual, "uv", None) is None
    report: dict = {}

    generate_uvs(scene, report=report)

    mesh = only_mesh(scene)
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.uv.min() >= 0 and mesh.visual.uv.max() <= 1
    # the same triangles in the same order, vertices split along chart borders only
    assert np.allclose(mesh.triangles, original.triangles)
    assert report["meshes_unwrapped"] == 1 and report["charts"] >= 1
    assert report["vertices_after"] == len(mesh.vertices) >= len(original.vertices)
    assert stretch(mesh) < 1.1, stretch(mesh)
    # the charts use a fair share of the square
    uv_area = (
        0.5
        * np.abs(
            np.cross(
                mesh.visual.uv[mesh.faces[:, 1]] - mesh.visual.uv[mesh.faces[:, 0]],
                mesh.visual.uv[mesh.faces[:, 2]] - mesh.visual.uv[mesh.faces[:, 0]],
            )
        ).sum()
    )
    assert uv_area > 0.4


def test_uvs_survive_decimation():
    scene = generate_uvs(repair(load(WUSON)))
    unwrapped = only_mesh(scene).copy()

    decimate(scene, DecimateOptions(ratio=0.5))

    mesh = only_mesh(scene)
    assert len(mesh.faces) <= 0.55 * len(unwrapped.faces)
    uv = mesh.visual.uv
    assert uv is not None and uv.shape == (len(mesh.vertices), 2)
    assert uv.min() >= 0 and uv.max() <= 1
    # every kept vertex keeps the position and UV it had: the same (x, y, z, u, v) pair
    pairs = cKDTree(np.hstack([unwrapped.vertices, unwrapped.visual.uv]))
    distance, _ = pairs.query(np.hstack([mesh.vertices, uv]))
    assert distance.max() < 1e-6


def test_meshes_with_uvs_are_left_alone_unless_overwritten():
    scene = load(FUZE)
    before = only_mesh(scene).visual.uv.copy()
    material = only_mesh(scene).visual.material
    report: dict = {}
    generate_uvs(scene, report=report)
    assert np.array_equal(only_mesh(scene).visual.uv, before)
    assert report["meshes_kept"] == 1 and report["meshes_unwrapped"] == 0

    generate_uvs(scene, GenerateUvsOptions(overwrite=True), report)
    uv = only_mesh(scene).visual.uv
    assert report["meshes_unwrapped"] == 1
    assert uv.shape != before.shape or not np.allclose(uv, before)
    # the material (and its texture) stays
    assert only_mesh(scene).visual.material is material


def test_texel_density_and_padding_are_options():
    box = trimesh.creation.box((1, 2, 3))
    tight = only_mesh(generate_uvs(from_trimesh(box.copy()), GenerateUvsOptions(padding=0)))
    padded = only_mesh(
        generate_uvs(from_trimesh(box.copy()), GenerateUvsOptions(padding=32, resolution=256))
    )
    dense = only_mesh(
        generate_uvs(from_trimesh(box.copy()), GenerateUvsOptions(texels_per_unit=64))
    )
    for mesh in (tight, padded, dense):
        assert 0 <= mesh.visual.uv.min() and mesh.visual.uv.max() <= 1

    def used(mesh):
        uv = mesh.visual.uv[mesh.faces]
        return 0.5 * np.abs(np.cross(uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0])).sum()

    assert used(padded) < used(tight)


def test_coloured_meshes_are_skipped_with_a_warning():
    box = trimesh.creation.box()
    box.visual.vertex_colors = [255, 0, 0, 255]
    scene = from_trimesh(box)
    report: dict = {}
    generate_uvs(scene, report=report)
    assert report["meshes_skipped"] == 1
    assert any("vertex or face colours" in warning for warning in scene.warnings)


def test_bad_options_are_option_errors():
    with pytest.raises(OptionsError, match="padding must be >= 0"):
        generate_uvs(from_trimesh(trimesh.creation.box()), GenerateUvsOptions(padding=-1))
