"""What an output format cannot hold is named in the scene's warnings, never dropped quietly."""

import re
import zipfile

import trimesh

from tasks.steps.io import SaveOptions, load, save

from conftest import DATA


def test_stl_says_it_drops_materials_and_instances_and_glb_drops_nothing(tmp_path):
    scene = load(DATA / "step" / "as1-oc-214.stp")
    save(scene, tmp_path / "as1.glb")
    assert scene.warnings == []

    save(scene, tmp_path / "as1.stl")
    save(scene, tmp_path / "again.stl")
    assert scene.warnings == [
        "STL keeps no materials: 5 material(s) left out",
        "STL keeps no instances: 13 repeated placement(s) written as copies",
    ]


def test_a_writer_warning_reaches_the_caller_when_the_unit_changes(tmp_path):
    scene = load(DATA / "glb" / "AlphaBlendModeTest.glb")
    save(scene, tmp_path / "alpha.obj", SaveOptions(output_unit=0.001))  # written from a copy
    assert any(warning.startswith("MTL cannot hold") for warning in scene.warnings)


def test_a_mesh_named_like_its_node_makes_a_valid_3mf(tmp_path):
    # texturedcube's node and mesh are both "Cube": trimesh 5.2 gave both one object id
    (package,) = save(load(DATA / "usd" / "texturedcube" / "texturedcube.usda"), tmp_path / "c.3mf")
    with zipfile.ZipFile(package) as zf:
        model = zf.read("3D/3dmodel.model").decode()
    ids = re.findall(r'<object id="(\d+)"', model)
    assert len(ids) == len(set(ids))
    assert trimesh.load_scene(str(package)).extents is not None
    assert len(load(package).trimesh_scene.geometry) == 1
