"""Writing every supported format: the files written are listed, and names, transforms,
materials and textures survive where the format can hold them."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tasks.steps.errors import WriteError
from tasks.steps.io import SaveOptions, load, save, writable_extensions

DATA = Path(__file__).parents[1] / "data"
TRUCK = DATA / "glb/CesiumMilkTruck.glb"


def texture_pixels(scene) -> list[np.ndarray]:
    return [
        np.asarray(g.visual.material.baseColorTexture.convert("RGBA"))
        for g in scene.trimesh_scene.geometry.values()
        if getattr(g.visual.material, "baseColorTexture", None) is not None
    ]


def test_writable_formats():
    assert set(writable_extensions()) == {
        "glb",
        "gltf",
        "obj",
        "stl",
        "ply",
        "off",
        "usd",
        "usda",
        "usdc",
        "usdz",
        "3mf",
        "fbx",
        "las",  # point clouds only
        "laz",
    }


@pytest.mark.parametrize(
    "extension", ["glb", "gltf", "obj", "stl", "ply", "off", "usd", "usda", "usdc", "usdz", "3mf"]
)
def test_assembly_round_trips_with_its_triangles(extension, tmp_path):
    scene = load(DATA / "step/as1-oc-214.stp")
    written = save(scene, tmp_path / f"as1.{extension}")
    assert written[0] == tmp_path / f"as1.{extension}"
    assert all(path.is_file() for path in written)
    assert load(written[0]).triangle_count == scene.triangle_count


def test_textured_glb_round_trips_pixel_identical(tmp_path):
    source = load(TRUCK)
    [path] = save(source, tmp_path / "truck.glb")
    again = load(path)
    assert again.triangle_count == source.triangle_count
    before, after = texture_pixels(source), texture_pixels(again)
    assert before and len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b)


def test_gltf_writes_json_bin_and_texture_files(tmp_path):
    written = save(load(TRUCK), tmp_path / "truck.gltf")
    names = sorted(path.name for path in written)
    assert "truck.gltf" in names and "truck.bin" in names
    assert any(name.endswith(".png") or name.endswith(".jpg") for name in names)
    document = json.loads((tmp_path / "truck.gltf").read_text())
    assert all("uri" in image for image in document["images"])
    again = load(tmp_path / "truck.gltf")
    assert np.array_equal(texture_pixels(again)[0], texture_pixels(load(TRUCK))[0])


def test_obj_writes_mtl_and_texture(tmp_path):
    written = save(load(DATA / "obj/fuze/fuze.obj"), tmp_path / "fuze.obj")
    assert written[0] == tmp_path / "fuze.obj"
    assert sorted(path.suffix for path in written) == [".jpeg", ".mtl", ".obj"]
    [mesh] = load(tmp_path / "fuze.obj").trimesh_scene.geometry.values()
    assert mesh.visual.material.image.size == (1024, 1024)


def test_usdz_keeps_names_transforms_colours_and_texture(tmp_path):
    source = load(TRUCK)
    [path] = save(source, tmp_path / "truck.usdz")
    with zipfile.ZipFile(path) as package:
        assert any(name.endswith(".png") for name in package.namelist())
    again = load(path)
    assert again.triangle_count == source.triangle_count
    assert np.allclose(again.trimesh_scene.bounds, source.trimesh_scene.bounds, atol=1e-4)
    assert texture_pixels(again)
    glass = [
        g.visual.material
        for g in again.trimesh_scene.geometry.values()
        if g.visual.material.name == "glass"
    ]
    assert glass and tuple(glass[0].baseColorFactor[:3]) == (0, 10, 5)


def test_usda_keeps_part_names_and_shares_meshes(tmp_path):
    written = save(load(DATA / "step/as1-oc-214.stp"), tmp_path / "as1.usda")
    text = written[0].read_text()
    assert 'class "Prototypes"' in text and text.count("def Mesh") == 5
    nodes = set(load(written[0]).trimesh_scene.graph.nodes)
    assert {"plate", "rod", "nut"} <= nodes


def test_point_cloud_writes_as_ply(tmp_path):
    import trimesh

    from tasks.steps.scene import from_trimesh

    cloud = trimesh.PointCloud(np.random.default_rng(1).random((100, 3)))
    [path] = save(from_trimesh(cloud), tmp_path / "cloud.ply")
    [again] = load(path).trimesh_scene.geometry.values()
    assert isinstance(again, trimesh.PointCloud) and len(again.vertices) == 100


def test_fbx_export_needs_a_configured_blender(tmp_path):
    with pytest.raises(WriteError, match=r"no Blender runtime configured"):
        save(load(DATA / "off/Wuson.off"), tmp_path / "out.fbx")
    with pytest.raises(WriteError, match=r"Blender executable '/no/blender' not found"):
        save(
            load(DATA / "off/Wuson.off"),
            tmp_path / "out.fbx",
            SaveOptions(blender_executable="/no/blender"),
        )


def test_fbx_export_runs_blender_with_the_scene(tmp_path):
    # a stand-in for Blender that checks its arguments and writes the target file
    blender = tmp_path / "blender"
    blender.write_text(
        '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\ntest -s "$2" && printf FBX > "$3"\n'
    )
    blender.chmod(blender.stat().st_mode | stat.S_IEXEC)
    written = save(
        load(DATA / "off/Wuson.off"),
        tmp_path / "out.fbx",
        SaveOptions(blender_executable=str(blender)),
    )
    assert written == [tmp_path / "out.fbx"]
    assert written[0].read_bytes() == b"FBX"
