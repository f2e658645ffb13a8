"""Fidelity benchmark: what goes in and what comes out, for every test model and output format.

    .venv/bin/python bench/fidelity.py                 # every model in tests/data
    .venv/bin/python bench/fidelity.py --formats glb usdz --models step 3mf

For each model, `io.load` reads it and `io.save` writes each output format; the output
is then reopened by an independent reference loader, never by this project's readers:
pygltflib + trimesh for glTF, pxr for USD, trimesh for OBJ/STL/PLY, the package XML +
trimesh for 3MF. The "in" side is the scene as read; the source's own size comes from
OCP for STEP/IGES and pxr for USD. Prints one table; a cell `a>b` means a went in and
b came out. `lost` is what the job's warnings said was dropped. Columns:

- size m: the bounding box in metres (+Y up) in, and as the reference loader sees the
  output in metres (its declared unit applied, turned +Y up)
- tris: placed triangles; meshes/placed: unique meshes and placements (instances)
- names: share of the input's part names found in the output (glTF, USD)
- mats/tex: materials and texture images
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"

MODELS = [
    "step/as1-oc-214.stp",
    "step/red_cube_blue_cylinder.step",
    "iges/sunglasses_lens.igs",
    "glb/CesiumMilkTruck.glb",
    "glb/AlphaBlendModeTest.glb",
    "glb/cottage-basis.glb",
    "gltf/ClearCoatTest/ClearCoatTest.gltf",
    "gltf/2CylinderEngine_draco/2CylinderEngine.gltf",
    "usd/teapot/teapot.usd",
    "usd/texturedcube/texturedcube.usda",
    "usd/primvar_interpolation.usda",
    "fbx/spider.fbx",
    "dae/duck/duck.dae",
    "dae/teapot_instancenodes.DAE",
    "obj/fuze/fuze.obj",
    "obj/spider/spider.obj",
    "3mf/cube_gears.3mf",
    "3mf/cube_gears_prod_req.3mf",
    "ply/cycloidal.ply",
    "ply/Wuson.ply",
    "off/Wuson.off",
    "stl/Spider_ascii.stl",
]
FORMATS = ["glb", "usdz", "obj", "stl", "3mf"]


def scene_facts(scene) -> dict:
    from tasks.steps.io.common import material_image

    ts = scene.trimesh_scene
    nodes = list(ts.graph.nodes_geometry)
    used = {ts.graph[node][1] for node in nodes}
    materials, images = set(), set()
    for name in used:
        material = getattr(getattr(ts.geometry[name], "visual", None), "material", None)
        if material is not None:
            materials.add(id(material))
            for key in ("baseColorTexture", "metallicRoughnessTexture", "normalTexture",
                        "occlusionTexture", "emissiveTexture", "image"):  # fmt: skip
                image = getattr(material, key, None)
                if image is not None:
                    images.add(id(image))
        if material_image(ts.geometry[name]) is not None:
            images.add(id(material_image(ts.geometry[name])))
    return {
        "size": ts.extents if len(nodes) else np.zeros(3),
        "tris": scene.triangle_count,
        "meshes": len(used),
        "placed": len(nodes),
        "names": set(nodes),
        "mats": len(materials),
        "tex": len(images),
    }


def check_glb(path: Path) -> dict:
    import pygltflib
    import trimesh

    document = pygltflib.GLTF2().load(str(path))
    placed = [node for node in document.nodes if node.mesh is not None]
    loaded = trimesh.load_scene(str(path))
    tris = sum(len(loaded.geometry[loaded.graph[n][1]].faces)
               for n in loaded.graph.nodes_geometry
               if hasattr(loaded.geometry[loaded.graph[n][1]], "faces"))  # fmt: skip
    return {
        "size": loaded.extents,
        "tris": tris,
        "meshes": len({node.mesh for node in placed}),
        "placed": len(placed),
        "names": {node.name for node in document.nodes if node.name},
        "mats": len(document.materials),
        "tex": len(document.images),
    }


def check_usd(path: Path) -> dict:
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(path))
    metres = UsdGeom.GetStageMetersPerUnit(stage)
    predicate = Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)
    meshes = [p for p in stage.Traverse(predicate) if p.IsA(UsdGeom.Mesh)]
    # the points under their world transforms (a transformed extent box would overstate)
    cache = UsdGeom.XformCache(Usd.TimeCode.Default())
    world = []
    for prim in meshes:
        points = np.asarray(UsdGeom.Mesh(prim).GetPointsAttr().Get() or [], dtype=float)
        if len(points):
            matrix = np.asarray(cache.GetLocalToWorldTransform(prim), dtype=float)
            world.append(points @ matrix[:3, :3] + matrix[3, :3])
    world = np.vstack(world) if world else np.zeros((1, 3))
    size = (world.max(axis=0) - world.min(axis=0)) * metres
    if UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z:
        size = size[[0, 2, 1]]
    tris = 0
    sources = set()
    for prim in meshes:
        counts = UsdGeom.Mesh(prim).GetFaceVertexCountsAttr().Get() or []
        tris += int(sum(max(c - 2, 0) for c in counts))
        stack = prim.GetPrimStack()
        sources.add(str(stack[-1].path) if stack else str(prim.GetPath()))
    names = set()
    for prim in stage.Traverse(predicate):
        names.add(prim.GetName())
        if prim.GetMetadata("displayName"):
            names.add(prim.GetMetadata("displayName"))
    every = list(Usd.PrimRange.Stage(stage, Usd.PrimAllPrimsPredicate))
    materials = [p for p in every if p.IsA(UsdShade.Material)]
    textures = {
        str(UsdShade.Shader(p).GetInput("file").Get().path)
        for p in every
        if p.IsA(UsdShade.Shader) and UsdShade.Shader(p).GetIdAttr().Get() == "UsdUVTexture"
    }
    return {
        "size": size,
        "tris": tris,
        "meshes": len(sources),
        "placed": len(meshes),
        "names": names,
        "mats": len(materials),
        "tex": len(textures),
    }


def check_trimesh(path: Path, unit: float, up_axis: str) -> dict:
    import trimesh

    loaded = trimesh.load_scene(str(path))
    size = loaded.extents * unit
    if up_axis == "z":
        size = size[[0, 2, 1]]
    tris = sum(len(g.faces) for g in loaded.dump() if hasattr(g, "faces"))
    images = 0
    if path.suffix == ".obj":
        mtl = path.with_suffix(".mtl")
        text = mtl.read_text(errors="replace") if mtl.exists() else ""
        mats = len(re.findall(r"^newmtl ", text, re.M))
        images = len(set(re.findall(r"^\s*(?:map_\w+|norm)\s+(?:-\S+\s+\S+\s+)*(\S+)", text, re.M)))
    else:
        mats = 0
    return {"size": size, "tris": tris, "meshes": None, "placed": None, "names": None,
            "mats": mats, "tex": images}  # fmt: skip


def check_3mf(path: Path) -> dict:
    with zipfile.ZipFile(path) as package:
        model = package.read("3D/3dmodel.model").decode()
    unit = {"millimeter": 0.001, "meter": 1.0, "centimeter": 0.01, "inch": 0.0254}[
        re.search(r'<model[^>]*unit="(\w+)"', model).group(1)
    ]
    facts = check_trimesh(path, unit, "z")
    facts["meshes"] = len(re.findall(r"<object [^>]*>\s*<mesh", model))
    facts["placed"] = len(re.findall(r"<(?:item|component) ", model))
    return facts


def check(path: Path, extension: str, unit: float, up_axis: str) -> dict:
    if extension in ("glb", "gltf"):
        return check_glb(path)
    if extension.startswith("usd"):
        return check_usd(path)
    if extension == "3mf":
        return check_3mf(path)
    return check_trimesh(path, unit, up_axis)


def cell(a, b, fmt="{}") -> str:
    if b is None:
        return fmt.format(a)
    return fmt.format(a) if a == b else f"{fmt.format(a)}>{fmt.format(b)}"


def size_cell(a, b) -> str:
    shown = "x".join(f"{v:.3g}" for v in a)
    if b is None or np.allclose(a, b, rtol=1e-3, atol=1e-6):
        return shown
    return f"{shown}>" + "x".join(f"{v:.3g}" for v in b)


def lost(before: list[str], after: list[str]) -> str:
    new = after[len(before) :]
    text = "; ".join(new)
    return text[:90] + ("..." if len(text) > 90 else "")


def print_markdown(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, pasted as it is into bench/RESULTS.md."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(value).replace("|", "/") for value in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", help="substrings of model paths to keep")
    parser.add_argument("--formats", nargs="*", default=FORMATS)
    args = parser.parse_args()

    from tasks.steps.io import load, output_frame, save

    rows = []
    models = [m for m in MODELS if not args.models or any(s in m for s in args.models)]
    for model in models:
        source = DATA / model
        try:
            scene = load(source)
        except Exception as exc:  # a row that says so beats a crashed table
            rows.append([model, "read", f"FAILED: {exc}"[:60], "", "", "", "", "", ""])
            continue
        before = scene_facts(scene)
        for extension in args.formats:
            with tempfile.TemporaryDirectory() as folder:
                warnings = list(scene.warnings)
                out = Path(folder) / f"out.{extension}"
                try:
                    written = save(scene, out)
                    unit, up_axis = output_frame(scene, extension)
                    after = check(written[0], extension, unit, up_axis)
                except Exception as exc:
                    rows.append([model, extension, f"FAILED: {exc}"[:60], "", "", "", "", "", ""])
                    continue
                names = ""
                if after["names"] is not None and before["names"]:
                    kept = len(before["names"] & after["names"]) / len(before["names"])
                    names = f"{kept:.0%}"
                rows.append(
                    [
                        model,
                        extension,
                        size_cell(before["size"], after["size"]),
                        cell(before["tris"], after["tris"]),
                        f"{cell(before['meshes'], after['meshes'])}/"
                        f"{cell(before['placed'], after['placed'])}",
                        names,
                        cell(before["mats"], after["mats"]),
                        cell(before["tex"], after["tex"]),
                        lost(warnings, scene.warnings),
                    ]
                )
                scene.warnings[:] = warnings
    print_markdown(
        ["model", "out", "size m", "tris", "meshes/placed", "names", "mats", "tex", "lost"], rows
    )


if __name__ == "__main__":
    main()
