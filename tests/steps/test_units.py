"""Every output at its real size and the right way up, checked against the reference loaders.

Each expected size is computed here from the source file by its own reference library
(OCP for STEP, pxr for USD, ufbx for FBX, pycollada for COLLADA, the package XML for 3MF),
never from this project's readers; outputs are reopened with trimesh, pxr or pygltflib.
"""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import trimesh

from tasks.steps.io import LoadOptions, SaveOptions, load, save
from tasks.steps.units import UNITS, frame_matrix, to_frame

from conftest import DATA

AS1 = DATA / "step" / "as1-oc-214.stp"


def step_size_mm(path) -> np.ndarray:
    """The STEP file's exact B-rep bounding box size (OCCT reads into mm, Z-up)."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib
    from OCP.STEPControl import STEPControl_Reader

    reader = STEPControl_Reader()
    reader.ReadFile(str(path))
    reader.TransferRoots()
    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(reader.OneShape(), box, False, False)
    low, high = np.array(box.CornerMin().Coord()), np.array(box.CornerMax().Coord())
    return high - low


def usd_size_m(path) -> tuple[np.ndarray, str]:
    """(size in metres along the stage's own axes, the stage's up axis) as pxr sees it."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    extent = cache.ComputeWorldBound(stage.GetPseudoRoot()).ComputeAlignedRange()
    size = np.array(extent.GetMax()) - np.array(extent.GetMin())
    return size * UsdGeom.GetStageMetersPerUnit(stage), str(UsdGeom.GetStageUpAxis(stage))


def glb_size(path) -> np.ndarray:
    return trimesh.load_scene(str(path)).extents


def z_up_to_y_up(size) -> np.ndarray:
    """A Z-up size seen +Y up: height moves to the second place, depth to the third."""
    x, y, z = size
    return np.array([x, z, y])


# -- STEP: millimetres, Z-up -> glTF metres, +Y up --------------------------------------


def test_a_step_assembly_becomes_a_glb_of_its_real_size_standing_up(tmp_path):
    expected = z_up_to_y_up(step_size_mm(AS1)) / 1000  # 200 x 150 x 84 mm plate
    assert expected == pytest.approx([0.2, 0.084, 0.15], abs=1e-6)

    scene = load(AS1)
    (glb,) = save(scene, tmp_path / "as1.glb")

    assert glb_size(glb) == pytest.approx(expected, abs=2e-4)
    assert scene.source_unit == 0.001 and scene.source_up_axis == "z"


def test_instances_stay_instances_through_the_change_of_frame(tmp_path):
    import pygltflib

    (glb,) = save(load(AS1), tmp_path / "as1.glb")
    document = pygltflib.GLTF2().load(str(glb))
    placed = [node for node in document.nodes if node.mesh is not None]
    # 18 placements of a few distinct parts: each mesh is stored once
    assert len(placed) == 18 and len(document.meshes) < len(placed)
    # and no scale node was added above the model: every node is rigid
    for node in document.nodes:
        if node.matrix:
            rotation = np.array(node.matrix).reshape(4, 4).T[:3, :3]
            assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
        assert node.scale in (None, [1, 1, 1], [1.0, 1.0, 1.0])


def test_usd_output_declares_its_unit_and_axis_and_pxr_sees_the_real_size(tmp_path):
    expected = z_up_to_y_up(step_size_mm(AS1)) / 1000

    (usdz,) = save(load(AS1), tmp_path / "as1.usdz")
    size, up_axis = usd_size_m(usdz)
    assert up_axis == "Y" and size == pytest.approx(expected, abs=2e-4)

    # in the unit the caller asks for, declared in metersPerUnit
    (usda,) = save(load(AS1), tmp_path / "as1.usda", SaveOptions(output_unit=UNITS["cm"]))
    assert "metersPerUnit = 0.01" in usda.read_text()
    assert usd_size_m(usda)[0] == pytest.approx(expected, abs=2e-4)


def test_unitless_outputs_keep_the_source_unit_and_axis_unless_told(tmp_path):
    expected_mm = step_size_mm(AS1)
    scene = load(AS1)

    (stl,) = save(scene, tmp_path / "as1.stl")
    assert trimesh.load(stl).extents == pytest.approx(expected_mm, abs=0.2)

    (stl_m,) = save(scene, tmp_path / "as1_m.stl", SaveOptions(output_unit=UNITS["m"]))
    assert trimesh.load(stl_m).extents == pytest.approx(expected_mm / 1000, abs=2e-4)
    # saving converted a copy: the scene itself is still in metres, +Y up
    assert scene.unit == 1.0 and scene.up_axis == "y"
    assert scene.trimesh_scene.extents == pytest.approx(z_up_to_y_up(expected_mm) / 1000, abs=2e-4)


def test_3mf_output_is_in_millimetres_z_up_as_its_spec_says(tmp_path):
    (package,) = save(load(AS1), tmp_path / "as1.3mf")
    with zipfile.ZipFile(package) as zf:
        model = zf.read("3D/3dmodel.model").decode()
    assert 'unit="millimeter"' in model
    raw = trimesh.load_scene(str(package))  # trimesh does not scale: raw millimetres
    assert raw.extents == pytest.approx(step_size_mm(AS1), abs=0.2)


# -- centimetre sources: FBX, COLLADA, USD -----------------------------------------------

UFBX_REFERENCE = """
import json, os, sys
import numpy as np
import ufbx

scene = ufbx.load_file(
    sys.argv[1],
    target_axes=ufbx.axes_right_handed_y_up,
    target_unit_meters=1.0,
    space_conversion=ufbx.SpaceConversion.MODIFY_GEOMETRY,
)
points = []
for index in range(len(scene.nodes)):
    node = scene.nodes[index]
    if node.mesh is None:
        continue
    m = np.asarray(node.geometry_to_world, dtype=float).reshape(4, 3)
    vertices = np.asarray(node.mesh.vertices, dtype=float).reshape(-1, 3)
    points.append(vertices @ m[:3] + m[3])
points = np.vstack(points)
print(json.dumps({"size": (points.max(0) - points.min(0)).tolist(),
                  "unit": scene.settings.original_unit_meters}))
sys.stdout.flush()
os._exit(0)  # ufbx 0.0.5's binding crashes at teardown
"""


def test_a_centimetre_fbx_becomes_a_glb_in_metres(tmp_path):
    path = DATA / "fbx" / "spider.fbx"
    shown = subprocess.run(
        [sys.executable, "-c", UFBX_REFERENCE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    reference = json.loads(shown.stdout)

    scene = load(path)
    (glb,) = save(scene, tmp_path / "spider.glb")

    assert scene.source_unit == pytest.approx(0.01)
    assert glb_size(glb) == pytest.approx(reference["size"], rel=1e-4)


def test_a_centimetre_collada_becomes_a_glb_in_metres(tmp_path):
    import collada

    path = DATA / "dae" / "duck" / "duck.dae"
    document = collada.Collada(str(path))
    assert document.assetInfo.unitmeter == 0.01 and document.assetInfo.upaxis == "Y_UP"
    points = np.vstack(
        [
            primitive.vertex[primitive.vertex_index].reshape(-1, 3)
            for geometry in document.scene.objects("geometry")
            for primitive in geometry.primitives()
        ]
    )
    expected = (points.max(0) - points.min(0)) * 0.01

    (glb,) = save(load(path), tmp_path / "duck.glb")

    assert glb_size(glb) == pytest.approx(expected, rel=1e-5)


def test_a_centimetre_usd_stage_becomes_a_glb_in_metres(tmp_path):
    path = DATA / "usd" / "primvar_interpolation.usda"
    expected, up_axis = usd_size_m(path)
    assert up_axis == "Y"

    scene = load(path)
    (glb,) = save(scene, tmp_path / "primvars.glb")

    assert scene.source_unit == pytest.approx(0.01)
    assert glb_size(glb) == pytest.approx(expected, rel=1e-5)


def test_a_z_up_usd_stage_stands_up_in_glb(tmp_path):
    from pxr import Usd, UsdGeom

    path = DATA / "usd" / "texturedcube" / "texturedcube.usda"
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == "Z"
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    cube = cache.ComputeWorldBound(stage.GetPrimAtPath("/Cube")).ComputeAlignedRange()
    centre = (np.array(cube.GetMin()) + np.array(cube.GetMax())) / 2  # 1.96 m above the floor

    (glb,) = save(load(path), tmp_path / "cube.glb")

    bounds = trimesh.load_scene(str(glb)).bounds
    x, y, z = centre
    assert bounds.mean(axis=0) == pytest.approx([x, z, -y], abs=1e-6)


def test_a_3mf_comes_out_in_metres_from_its_declared_unit(tmp_path):
    path = DATA / "3mf" / "cube_gears.3mf"
    import re

    with zipfile.ZipFile(path) as zf:
        model = zf.read("3D/3dmodel.model").decode()
    declared = re.search(r'<model[^>]*\sunit="(\w+)"', model)
    unit = {"millimeter": 0.001, "centimeter": 0.01, "inch": 0.0254, "meter": 1.0}[
        declared.group(1) if declared else "millimeter"  # the spec's default
    ]
    raw = trimesh.load_scene(str(path)).extents  # raw package coordinates

    (glb,) = save(load(path), tmp_path / "gears.glb")

    assert glb_size(glb) == pytest.approx(z_up_to_y_up(raw) * unit, rel=1e-5)


# -- the caller's word over the file's ---------------------------------------------------


def test_input_unit_and_up_axis_override_what_a_file_declares(tmp_path):
    path = DATA / "obj" / "fuze" / "fuze.obj"
    raw = trimesh.load_scene(str(path)).extents

    assert load(path).trimesh_scene.extents == pytest.approx(raw)  # OBJ: metres, +Y
    in_mm = load(path, LoadOptions(input_unit=UNITS["mm"]))
    assert in_mm.trimesh_scene.extents == pytest.approx(raw / 1000)
    z_up = load(path, LoadOptions(up_axis="z"))
    assert z_up.trimesh_scene.extents == pytest.approx(z_up_to_y_up(raw))
    # back out as OBJ, the source's own frame comes back
    (obj, *_) = save(z_up, tmp_path / "fuze.obj")
    assert trimesh.load_scene(str(obj)).extents == pytest.approx(raw, rel=1e-6)


def test_frame_changes_compose_and_invert():
    there = frame_matrix(0.001, "z", 1.0, "y")
    back = frame_matrix(1.0, "y", 0.001, "z")
    assert there @ back == pytest.approx(np.eye(4))
    assert there[:3, :3] @ [0, 0, 1000] == pytest.approx([0, 1, 0])  # 1 m up, Z -> Y
    x_up = frame_matrix(1.0, "x", 1.0, "y")
    assert x_up[:3, :3] @ [1, 0, 0] == pytest.approx([0, 1, 0])
    assert np.linalg.det(x_up[:3, :3]) == pytest.approx(1.0)  # a rotation, never a mirror


def test_a_scene_whose_frame_is_unknown_is_not_guessed():
    scene = load(DATA / "off" / "Wuson.off")
    scene.unit = None
    with pytest.raises(ValueError, match="not known"):
        to_frame(scene, 1.0, "y")
