"""Reading every supported format: real corpus models load with their triangles, names,
materials and textures, and convert to a GLB that re-opens with the same triangles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.errors import ReadError
from tasks.steps.io import load, readable_extensions, save

DATA = Path(__file__).parents[1] / "data"

# (file, placed triangles) for one or two real models per format
CORPUS = [
    ("glb/CesiumMilkTruck.glb", 3624),
    ("glb/pirate_meshopt.glb", 5010),
    ("gltf/2CylinderEngine_draco/2CylinderEngine.gltf", 110336),
    ("obj/fuze/fuze.obj", 1000),
    ("obj/spider/spider.obj", 1368),
    ("stl/Spider_ascii.stl", 1368),
    ("ply/cycloidal.ply", 43368),
    ("off/Wuson.off", 3732),
    ("3mf/cube_gears.3mf", 25692),
    ("dae/teapot_instancenodes.DAE", 2048),
    ("usd/teapot/teapot.usd", 2472),
    ("usd/texturedcube/texturedcube.usda", 12),
    ("fbx/spider.fbx", 1368),
    ("fbx/animation_with_skeleton.fbx", 2112),
    ("step/red_cube_blue_cylinder.step", None),
    ("iges/sunglasses_lens.igs", None),
]


def unique_triangles(scene) -> int:
    return sum(len(g.faces) for g in scene.trimesh_scene.geometry.values() if hasattr(g, "faces"))


@pytest.mark.parametrize(("name", "triangles"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_model_loads_and_survives_glb(name, triangles, tmp_path):
    scene = load(DATA / name)
    assert scene.triangle_count > 0
    if triangles is not None:
        assert scene.triangle_count == triangles
    assert scene.source_name == Path(name).name
    [glb] = save(scene, tmp_path / "out.glb")
    assert load(glb).triangle_count == scene.triangle_count


def test_every_corpus_format_is_covered():
    covered = {Path(name).suffix.lstrip(".").lower() for name, _ in CORPUS}
    assert covered >= {
        "glb",
        "gltf",
        "obj",
        "stl",
        "ply",
        "off",
        "3mf",
        "dae",
        "usd",
        "usda",
        "fbx",
        "step",
        "igs",
    }
    assert set(readable_extensions()) >= covered | {"usdc", "usdz", "stp", "iges", "brep", "zae"}


def test_extension_case_does_not_matter():
    assert load(DATA / "dae/teapot_instancenodes.DAE").source_format == "dae"


# -- glTF --------------------------------------------------------------------------------


def test_draco_engine_decodes_all_65311_triangles():
    scene = load(DATA / "gltf/2CylinderEngine_draco/2CylinderEngine.gltf")
    # 65,311 distinct triangles; some parts are placed twice, hence 110,336 placed
    assert unique_triangles(scene) == 65311
    assert len(scene.trimesh_scene.graph.nodes_geometry) == 115


def test_meshopt_glb_decodes_to_a_sane_mesh():
    scene = load(DATA / "glb/pirate_meshopt.glb")
    # quantized positions dequantized by the node scale: a figure under 2 units tall
    assert 0.5 < scene.trimesh_scene.extents.max() < 2
    # octahedral-filtered normals decode to unit vectors
    [mesh] = scene.trimesh_scene.geometry.values()
    assert np.allclose(np.linalg.norm(mesh.vertex_normals, axis=1), 1, atol=0.02)


def test_glb_keeps_texture_and_animation_count():
    scene = load(DATA / "glb/CesiumMilkTruck.glb")
    textured = [
        g
        for g in scene.trimesh_scene.geometry.values()
        if getattr(g.visual.material, "baseColorTexture", None) is not None
    ]
    assert textured
    assert scene.facts["animation_count"] == 1


def test_ktx2_texture_is_skipped_with_a_warning(tmp_path):
    source = load(DATA / "glb/CesiumMilkTruck.glb")
    [path] = save(source, tmp_path / "truck.gltf")[:1]
    document = json.loads(path.read_text())
    document["images"][0] = {"uri": "truck.ktx2", "mimeType": "image/ktx2"}
    path.write_text(json.dumps(document))
    scene = load(path)
    assert scene.triangle_count == source.triangle_count
    assert any("KTX2" in warning for warning in scene.warnings)


# -- OBJ ---------------------------------------------------------------------------------


def test_obj_groups_keep_names_and_backslash_textures_resolve():
    scene = load(DATA / "obj/spider/spider.obj")
    assert {"HLeib01", "Bein1Li", "Kopf"} <= set(scene.trimesh_scene.graph.nodes_geometry)
    images = [g.visual.material.image for g in scene.trimesh_scene.geometry.values()]
    assert all(image is not None for image in images)
    assert not scene.warnings


def test_obj_with_missing_mtl_loads_with_a_warning(tmp_path):
    path = tmp_path / "chair.obj"
    path.write_text("mtllib model.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl wood\nf 1 2 3\n")
    scene = load(path)
    assert scene.triangle_count == 1
    assert scene.warnings == ["material library 'model.mtl' not found; loaded without materials"]


def test_obj_texture_with_space_in_name_loads():
    [mesh] = load(DATA / "obj/fuze/fuze.obj").trimesh_scene.geometry.values()
    assert mesh.visual.material.image.size == (1024, 1024)


# -- PLY, STL ----------------------------------------------------------------------------


def test_ply_point_cloud_stays_a_point_cloud(tmp_path):
    cloud = trimesh.PointCloud(np.random.default_rng(0).random((500, 3)))
    path = tmp_path / "cloud.ply"
    path.write_bytes(trimesh.exchange.ply.export_ply(cloud))
    scene = load(path)
    [geometry] = scene.trimesh_scene.geometry.values()
    assert isinstance(geometry, trimesh.PointCloud)
    assert len(geometry.vertices) == 500
    assert scene.triangle_count == 0


def test_binary_stl_loads(tmp_path):
    path = tmp_path / "sphere.STL"
    path.write_bytes(trimesh.exchange.stl.export_stl(trimesh.creation.icosphere(subdivisions=3)))
    assert load(path).triangle_count == 1280


# -- USD ---------------------------------------------------------------------------------


def test_layered_usd_resolves_payload_references_and_material():
    scene = load(DATA / "usd/teapot/teapot.usd")
    assert scene.triangle_count == 2472
    [mesh] = scene.trimesh_scene.geometry.values()
    assert mesh.visual.material.name == "default_material"


def test_usda_windows_texture_path_resolves_and_z_up_turns_y_up():
    scene = load(DATA / "usd/texturedcube/texturedcube.usda")
    [mesh] = scene.trimesh_scene.geometry.values()
    assert mesh.visual.material.baseColorTexture.size == (1280, 1280)
    assert mesh.visual.uv is not None
    # the cube sits at z = 1.955 in the Z-up file: that is +y after conversion
    assert scene.trimesh_scene.bounds[:, 1].mean() == pytest.approx(1.955, abs=1e-3)


# -- FBX, COLLADA ------------------------------------------------------------------------


def test_fbx_keeps_node_names_materials_and_reports_missing_textures():
    scene = load(DATA / "fbx/spider.fbx")
    assert {"HLeib01", "Bein1Li", "Kopf"} <= set(scene.trimesh_scene.graph.nodes)
    names = {g.visual.material.name for g in scene.trimesh_scene.geometry.values()}
    assert names == {"BeinTex", "Skin", "Augentex", "HLeibTex"}
    assert any("missing texture" in warning for warning in scene.warnings)


def test_fbx_animation_is_counted():
    assert load(DATA / "fbx/animation_with_skeleton.fbx").facts["animation_count"] == 1


def test_collada_instance_nodes_place_the_teapot_twice():
    scene = load(DATA / "dae/teapot_instancenodes.DAE")
    assert len(scene.trimesh_scene.graph.nodes_geometry) == 2


def test_a_usd_stage_composes_nothing_from_outside_its_folder(tmp_path):
    """An uploaded stage naming another job's (or the worker's) files gets none of them."""
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(DATA / "usd/teapot", elsewhere)
    upload = tmp_path / "upload"
    upload.mkdir()
    for reference in (f"{elsewhere}/teapot.usd", "../elsewhere/teapot.usd"):
        (upload / "stage.usda").write_text(
            f'#usda 1.0\ndef Xform "Pot" (references = @{reference}@) {{ }}\n'
        )
        with pytest.raises(ReadError, match="from outside its folder.*teapot.usd"):
            load(upload / "stage.usda")
    # A texture outside the folder is not read, and the reader says so.
    cube = upload / "cube"
    shutil.copytree(DATA / "usd/texturedcube", cube)
    text = (cube / "texturedcube.usda").read_text()
    png = elsewhere / "checkerboard.png"
    shutil.copy(cube / "textures" / "checkerboard.png", png)
    (cube / "texturedcube.usda").write_text(
        text.replace(r"@.\textures\checkerboard.png@", f"@{png}@")
    )
    scene = load(cube / "texturedcube.usda")
    [mesh] = scene.trimesh_scene.geometry.values()
    assert getattr(mesh.visual.material, "baseColorTexture", None) is None
    assert any("outside the model's folder" in w for w in scene.warnings)
