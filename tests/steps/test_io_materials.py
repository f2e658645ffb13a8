"""Materials and textures survive conversion: every glTF PBR input (base colour, metallic-
roughness, normal, occlusion and emissive maps and factors, alpha mode, double-sidedness)
goes to USD/USDZ as UsdPreviewSurface and back, glTF to OBJ writes the MTL PBR keys, and
KTX2/Basis textures are decoded instead of dropped."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tasks.steps.io import load, save

DATA = Path(__file__).parents[1] / "data"

MAPS = (
    "baseColorTexture",
    "metallicRoughnessTexture",
    "normalTexture",
    "occlusionTexture",
    "emissiveTexture",
)


def materials(scene) -> dict:
    return {
        geometry.visual.material.name: geometry.visual.material
        for geometry in scene.trimesh_scene.geometry.values()
    }


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))


def factors(material) -> dict:
    """A material's factors with glTF's defaults filled in."""
    base = material.baseColorFactor
    return {
        "baseColorFactor": [255] * 4 if base is None else list(base),
        "metallicFactor": 1.0 if material.metallicFactor is None else material.metallicFactor,
        "roughnessFactor": 1.0 if material.roughnessFactor is None else material.roughnessFactor,
        "emissiveFactor": [0.0] * 3
        if material.emissiveFactor is None
        else list(material.emissiveFactor),
        "alphaMode": material.alphaMode or "OPAQUE",
        "alphaCutoff": (0.5 if material.alphaCutoff is None else material.alphaCutoff)
        if material.alphaMode == "MASK"
        else None,
        "doubleSided": bool(material.doubleSided),
    }


def assert_same_materials(before: dict, after: dict) -> None:
    assert set(after) == set(before)
    for name, material in before.items():
        back = after[name]
        for key in MAPS:
            image = getattr(material, key)
            assert (getattr(back, key) is None) == (image is None), f"{name}.{key}"
            if image is not None:
                assert np.array_equal(pixels(getattr(back, key)), pixels(image)), f"{name}.{key}"
        expected, got = factors(material), factors(back)
        for key, value in expected.items():
            if isinstance(value, list):
                assert np.allclose(got[key], value, atol=1e-4), f"{name}.{key}"
            elif isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-6), f"{name}.{key}"
            else:
                assert got[key] == value, f"{name}.{key}"


@pytest.mark.parametrize(
    "model",
    ["glb/AlphaBlendModeTest.glb", "gltf/ClearCoatTest/ClearCoatTest.gltf"],
)
def test_every_map_and_factor_survives_usdz_and_back(model, tmp_path):
    source = load(DATA / model)
    before = materials(source)
    # the two models hold every glTF map between them
    assert {key for m in before.values() for key in MAPS if getattr(m, key) is not None} >= (
        set(MAPS) - ({"occlusionTexture"} if "ClearCoat" in model else {"emissiveTexture"})
    )
    [usdz] = save(source, tmp_path / "model.usdz")
    assert not [w for w in source.warnings if "texture" in w]
    again = load(usdz)
    assert_same_materials(before, materials(again))
    # and on to GLB: trimesh writes what it read
    [glb] = save(again, tmp_path / "model.glb")
    assert_same_materials(before, materials(load(glb)))


def test_usdz_wires_the_preview_surface_as_usd_expects(tmp_path):
    from pxr import Usd, UsdGeom, UsdShade

    [usdz] = save(load(DATA / "glb/AlphaBlendModeTest.glb"), tmp_path / "alpha.usdz")
    stage = Usd.Stage.Open(str(usdz))
    surfaces = {
        prim.GetParent().GetName(): UsdShade.Shader(prim)
        for prim in stage.Traverse()
        if prim.GetName() == "PreviewSurface"
    }

    def source(shader, name):
        [connection] = shader.GetInput(name).GetConnectedSources()[0]
        return UsdShade.Shader(connection.source.GetPrim()), str(connection.sourceName)

    bed = surfaces["MatBed"]
    # one metallicRoughness texture: B is metallic, G roughness
    metallic, metallic_output = source(bed, "metallic")
    roughness, roughness_output = source(bed, "roughness")
    assert metallic.GetPath() == roughness.GetPath()
    assert (metallic_output, roughness_output) == ("b", "g")
    assert metallic.GetInput("sourceColorSpace").Get() == "raw"
    # the normal map decoded from [0, 1] to [-1, 1]
    normal, output = source(bed, "normal")
    assert output == "rgb"
    assert tuple(normal.GetInput("scale").Get()) == (2, 2, 2, 1)
    assert tuple(normal.GetInput("bias").Get()) == (-1, -1, -1, 0)
    occlusion, output = source(bed, "occlusion")
    assert output == "r"
    diffuse, output = source(bed, "diffuseColor")
    assert (output, diffuse.GetInput("sourceColorSpace").Get()) == ("rgb", "sRGB")
    # alpha modes: MASK is a threshold on the texture's alpha, BLEND the alpha itself
    assert surfaces["MatCutoff25"].GetInput("opacityThreshold").Get() == pytest.approx(0.25)
    assert source(surfaces["MatCutoff25"], "opacity")[1] == "a"
    assert source(surfaces["MatBlend"], "opacity")[1] == "a"
    assert not surfaces["MatBlend"].GetInput("opacityThreshold")
    assert not surfaces["MatOpaque"].GetInput("opacity").HasConnectedSource()
    # double-sided materials make double-sided meshes
    sided = {
        UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0].GetPrim().GetName(): bool(
            UsdGeom.Mesh(prim).GetDoubleSidedAttr().Get()
        )
        for prim in stage.Traverse()
        if prim.IsA(UsdGeom.Mesh)
    }
    assert sided["MatBlend"] and not sided["MatBed"]
    # every texture is packed in the .usdz, once
    with zipfile.ZipFile(usdz) as package:
        textures = [name for name in package.namelist() if name.endswith(".png")]
    assert len(textures) == len(set(textures))
    assert {
        f"textures/MatBed_{role}.png"
        for role in ("baseColor", "metallicRoughness", "normal", "occlusion")
    } <= set(textures)


def test_emissive_map_and_factor_reach_the_preview_surface(tmp_path):
    from pxr import Usd, UsdShade

    usda, *textures = save(
        load(DATA / "gltf/ClearCoatTest/ClearCoatTest.gltf"), tmp_path / "coat.usda"
    )
    stage = Usd.Stage.Open(str(usda))
    shader = UsdShade.Shader(stage.GetPrimAtPath("/Root/Materials/LabelMaterial/PreviewSurface"))
    [connection] = shader.GetInput("emissiveColor").GetConnectedSources()[0]
    texture = UsdShade.Shader(connection.source.GetPrim())
    assert texture.GetIdAttr().Get() == "UsdUVTexture"
    assert tuple(texture.GetInput("scale").Get()) == (1, 1, 1, 1)  # emissiveFactor
    assert tmp_path / "coat_textures" / "LabelMaterial_emissive.png" in textures


def test_obj_mtl_carries_the_pbr_extension_and_reads_back(tmp_path):
    source = load(DATA / "glb/AlphaBlendModeTest.glb")
    bed = materials(source)["MatBed"]
    written = save(source, tmp_path / "alpha.obj")
    mtl = (tmp_path / "alpha.mtl").read_text()
    block = mtl[mtl.index("newmtl MatBed") :]
    for line in (
        "Pr 1.000000",
        "Pm 1.000000",
        "map_Pr -imfchan g MatBed_metallicRoughness.png",
        "map_Pm -imfchan b MatBed_metallicRoughness.png",
        "norm MatBed_normal.png",
    ):
        assert line in block
    assert {path.name for path in written} >= {"MatBed_metallicRoughness.png", "MatBed_normal.png"}
    # what MTL has no key for is named, not lost silently
    assert any("occlusion maps" in warning for warning in source.warnings)
    back = materials(load(tmp_path / "alpha.obj"))["MatBed"]
    for key in ("baseColorTexture", "metallicRoughnessTexture", "normalTexture"):
        assert np.array_equal(pixels(getattr(back, key)), pixels(getattr(bed, key)))
    assert (back.metallicFactor, back.roughnessFactor) == (1.0, 1.0)


def test_obj_mtl_writes_emission(tmp_path):
    source = load(DATA / "gltf/ClearCoatTest/ClearCoatTest.gltf")
    label = materials(source)["LabelMaterial"]
    save(source, tmp_path / "coat.obj")
    mtl = (tmp_path / "coat.mtl").read_text()
    block = mtl[mtl.index("newmtl LabelMaterial") :]
    assert "Ke 1.000000 1.000000 1.000000" in block
    assert "map_Ke LabelMaterial_emissive.png" in block
    back = materials(load(tmp_path / "coat.obj"))["LabelMaterial"]
    assert np.array_equal(pixels(back.emissiveTexture), pixels(label.emissiveTexture))
    assert list(back.emissiveFactor) == [1.0, 1.0, 1.0]


def test_ktx2_basisu_textures_are_decoded():
    scene = load(DATA / "glb/cottage-basis.glb")
    assert not [warning for warning in scene.warnings if "KTX2" in warning]
    found = materials(scene)
    assert set(found) == {"blinn2", "blinn3", "blinn4"}
    for material in found.values():
        assert material.baseColorTexture is not None
        assert material.baseColorTexture.size == (2048, 2048)  # the KTX2 files' level 0
        assert material.doubleSided
    assert found["blinn3"].alphaMode == "MASK"
    assert found["blinn3"].alphaCutoff == pytest.approx(0.4)
    # the decoded pixels are an image, not a flat colour
    assert pixels(found["blinn2"].baseColorTexture)[..., :3].std() > 10


def test_ktx2_textures_reach_usdz(tmp_path):
    [usdz] = save(load(DATA / "glb/cottage-basis.glb"), tmp_path / "cottage.usdz")
    back = materials(load(usdz))
    assert all(m.baseColorTexture.size == (2048, 2048) for m in back.values())
    assert back["blinn3"].alphaMode == "MASK"
