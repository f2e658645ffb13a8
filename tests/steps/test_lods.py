"""LODs: a chain of lighter scenes, each from the original, one level per (picklable) task."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.errors import OptionsError
from tasks.steps.lods import LodOptions, lod_one, lods
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).parents[1] / "data"


def bumpy_sphere() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=5)
    x, y, z = sphere.vertices.T
    radius = 1 + 0.03 * np.sin(7 * x) * np.sin(6 * y) * np.sin(5 * z)
    return trimesh.Trimesh(sphere.vertices * radius[:, None], sphere.faces, process=False)


def test_default_chain_keeps_1_half_quarter_tenth_of_the_triangles():
    scene = from_trimesh(bumpy_sphere())
    assert scene.triangle_count == 20480

    levels = lods(scene)

    counts = [level.triangle_count for level in levels]
    assert counts[0] == 20480
    for count, ratio in zip(counts[1:], (0.5, 0.25, 0.1), strict=True):
        assert count == pytest.approx(20480 * ratio, rel=0.1)
    # the original is untouched
    assert scene.triangle_count == 20480


def test_each_level_is_decimated_from_the_original():
    scene = from_trimesh(bumpy_sphere())
    chained = lods(scene, LodOptions(ratios=(0.1,)))[0]
    # the same level alone, as a separate task would make it, is the same mesh
    alone = lod_one(scene, 0.1)
    [a], [b] = chained.trimesh_scene.geometry.values(), alone.trimesh_scene.geometry.values()
    assert np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.vertices, b.vertices)


def test_lod_one_is_a_plain_picklable_task():
    scene = from_trimesh(trimesh.load(DATA / "glb/CesiumMilkTruck.glb"))
    task = pickle.loads(pickle.dumps(lod_one))
    shipped = pickle.loads(pickle.dumps(scene))

    level = task(shipped, 0.5)

    assert level.triangle_count < 0.75 * scene.triangle_count
    body = level.trimesh_scene.geometry["Cesium_Milk_Truck"]
    assert body.visual.uv.shape == (len(body.vertices), 2)
    assert body._cache["vertex_normals"] is not None


@pytest.mark.parametrize("ratios", [(), (1.0, 0.0), (1.5,)])
def test_bad_ratios_are_refused_with_a_readable_error(ratios):
    with pytest.raises(OptionsError, match="lods:"):
        lods(from_trimesh(trimesh.creation.box()), LodOptions(ratios=ratios))


@pytest.mark.parametrize("name", ["stl/Spider_ascii.stl", "3mf/cube_gears.3mf"])
def test_a_repaired_level_that_lost_faces_still_writes_a_glb(tmp_path, name):
    # Repair drops degenerate/duplicate faces; a copy made afterwards once carried the
    # old face count in its cache and the GLB writer crashed on it.
    from tasks.steps.io import load, save

    level = lod_one(load(DATA / name), 1.0)
    written = save(level, tmp_path / "lod0.glb")
    reread = trimesh.load(written[0], force="scene")
    assert sum(len(g.faces) for g in reread.geometry.values()) > 0
