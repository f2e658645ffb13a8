"""The Hausdorff measure the decimation tests rely on: exact distances, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tasks.steps.decimate import DecimateOptions, decimate
from tasks.steps.hausdorff import hausdorff_distance, surface_distances
from tasks.steps.scene import from_trimesh


def test_point_distances_are_exact_against_brute_force():
    # an open, decimated mesh: triangles of very different sizes, where the
    # triangle with the nearest centroid is often not the nearest triangle
    sphere = trimesh.creation.icosphere(subdivisions=4)
    sphere.update_faces(np.arange(len(sphere.faces)) % 7 != 0)
    scene = decimate(from_trimesh(sphere), DecimateOptions(ratio=0.1))
    [mesh] = scene.trimesh_scene.geometry.values()
    points = np.random.default_rng(1).normal(size=(300, 3)) * 0.7
    brute = [
        np.linalg.norm(
            trimesh.triangles.closest_point(mesh.triangles, np.repeat(p[None], len(mesh.faces), 0))
            - p,
            axis=1,
        ).min()
        for p in points
    ]
    assert np.allclose(surface_distances(points, mesh), brute, atol=1e-12)


def test_concentric_spheres_are_their_radius_gap_apart():
    inner = trimesh.creation.icosphere(subdivisions=5)
    outer = inner.copy()
    outer.apply_scale(1.1)
    # sphere vertices lie on the unit sphere; faces sit slightly inside it
    sagitta = 1 - np.linalg.norm(inner.triangles_center, axis=1).min()
    distance = hausdorff_distance(inner, outer, samples=20_000)
    assert 0.1 <= distance <= 0.1 + 1.1 * sagitta + 1e-9


def test_identical_meshes_are_zero_apart():
    box = trimesh.creation.box()
    assert hausdorff_distance(box, box.copy(), samples=1000) == pytest.approx(0, abs=1e-12)
