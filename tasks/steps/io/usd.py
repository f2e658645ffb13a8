"""OpenUSD in and out (.usd, .usda, .usdc, .usdz) through Pixar's `pxr` (usd-core).

Reading composes the stage first, so layered assets (sublayers, references,
payloads) arrive resolved, from the stage's own folder only (a stage naming a layer
elsewhere fails; a texture elsewhere is skipped with a warning); every imageable prim becomes a scene node with its local
transform and name, meshes are triangulated, and materials come from
UsdPreviewSurface (diffuse colour or texture, metallic, roughness, opacity) or
else ``primvars:displayColor``. A Z-up stage is turned Y-up at the root, as glTF
expects. Writing puts each distinct mesh once under an abstract ``class`` prim and
references it from every placement, with UsdPreviewSurface materials; .usdz is a
package of a .usdc and its textures.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.errors import StepError
from tasks.steps.io.common import find_file, material_colour, material_image, read_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def read_usd(path: Path, options: LoadOptions) -> Scene:
    """Read a USD stage (any of the four extensions) into a Scene."""
    from pxr import Usd, UsdGeom

    extension = path.suffix.lstrip(".").lower()
    # 1. open and compose the stage (references and payloads included), from its own folder
    try:
        outside = layers_outside(path)
        if outside:
            raise read_error(
                path,
                extension,
                "the stage composes files from outside its folder, which is not allowed: "
                + ", ".join(outside[:5]),
            )
        stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    except StepError:
        raise
    except Exception as exc:  # pxr raises Tf.ErrorException, which has no stable import
        raise read_error(path, extension, f"not a readable USD stage ({exc})") from exc
    if stage is None:
        raise read_error(path, extension, "not a readable USD stage")
    # 2. walk the prim tree into nodes and meshes
    reader = _StageReader(stage, path)
    root = reader.scene.graph.base_frame
    for prim in stage.GetPseudoRoot().GetFilteredChildren(_predicate()):
        reader.walk(prim, root)
    reader.report_skipped()
    # 3. animations: skeletal animations, else any authored time range
    animations = sum(
        1 for prim in stage.Traverse(_predicate()) if prim.GetTypeName() == "SkelAnimation"
    )
    if not animations and stage.HasAuthoredTimeCodeRange():
        animations = int(stage.GetEndTimeCode() > stage.GetStartTimeCode())
    facts = {"animation_count": animations} if animations else {}
    # 4. the stage's unit and up axis (UsdGeom's fallbacks: centimetres, +Y); io.load converts
    up_axis = "z" if UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z else "y"
    return Scene(
        trimesh_scene=reader.scene,
        facts=facts,
        warnings=reader.warnings,
        unit=float(UsdGeom.GetStageMetersPerUnit(stage)),
        up_axis=up_axis,
    )


def layers_outside(path: Path) -> list[str]:
    """The layers (sublayers, references, payloads, in variants too) a stage would open from
    outside the folder of `path`. OpenUSD resolves any path a layer names; an uploaded stage
    must not compose the worker's or another job's files into its outputs."""
    from pxr import Ar, Sdf

    root = path.parent.resolve()
    resolver = Ar.GetResolver()
    outside: list[str] = []
    seen: set[str] = set()
    todo = [str(path)]
    while todo:
        layer = Sdf.Layer.FindOrOpen(todo.pop())
        if layer is None or layer.identifier in seen:
            continue  # unreadable layers are reported when the stage is composed
        seen.add(layer.identifier)
        for reference in layer.GetCompositionAssetDependencies():
            identifier = resolver.CreateIdentifier(reference, Ar.ResolvedPath(layer.realPath))
            resolved = str(resolver.Resolve(identifier))
            if not inside_folder(resolved or identifier, root):
                outside.append(reference)
            elif resolved:
                todo.append(resolved)
    return outside


def inside_folder(resolved: str, root: Path) -> bool:
    """Whether a resolved USD path lies in `root` (`pkg.usdz[inner.usda]` counts as `pkg.usdz`).
    A relative path that did not resolve opens nothing."""
    file_part = resolved.split("[", 1)[0]
    if not os.path.isabs(file_part):
        return True
    return Path(file_part).resolve().is_relative_to(root)


def _predicate():
    from pxr import Usd

    # instance proxies make instanced prims (point instancers excepted) visible to the walk
    return Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)


class _StageReader:
    """Turns prims into trimesh nodes and geometry, sharing materials and textures."""

    def __init__(self, stage, path: Path):
        from pxr import Usd

        self.stage, self.path = stage, path
        self.root = path.parent.resolve()
        self.time = Usd.TimeCode.EarliestTime()
        self.scene = trimesh.Scene()
        self.warnings: list[str] = []
        self.materials: dict[str, trimesh.visual.material.PBRMaterial] = {}
        self.uv_names: dict[str, str | None] = {}
        self.skipped: dict[str, int] = {}
        self.directories = [
            Path(layer.realPath).parent for layer in stage.GetUsedLayers() if layer.realPath
        ]

    def add_node(self, name: str, parent: str, matrix: np.ndarray, geometry=None) -> str:
        node = trimesh.util.unique_name(name, self.scene.graph.transforms.node_data)
        extra = {"geometry": geometry} if geometry else {}
        self.scene.graph.update(frame_from=parent, frame_to=node, matrix=matrix, **extra)
        return node

    def walk(self, prim, parent: str) -> None:
        from pxr import UsdGeom

        if not prim.IsA(UsdGeom.Imageable) and prim.GetTypeName() not in ("", "Scope"):
            # materials, shaders, skeletons: nothing to place
            return
        imageable = UsdGeom.Imageable(prim)
        if imageable and imageable.ComputeVisibility(self.time) == UsdGeom.Tokens.invisible:
            return
        if prim.IsA(UsdGeom.Imageable) and not (
            prim.IsA(UsdGeom.Xformable) or prim.GetTypeName() == "Scope"
        ):
            self.skipped[prim.GetTypeName()] = self.skipped.get(prim.GetTypeName(), 0) + 1
            return
        matrix = np.eye(4)
        if prim.IsA(UsdGeom.Xformable):
            # USD matrices act on row vectors; trimesh's on column vectors
            matrix = np.array(UsdGeom.Xformable(prim).GetLocalTransformation(self.time)).T
        geometry = None
        if prim.IsA(UsdGeom.Mesh):
            geometry = self.mesh(UsdGeom.Mesh(prim))
        elif prim.IsA(UsdGeom.Points):
            geometry = self.points(UsdGeom.Points(prim))
        elif prim.IsA(UsdGeom.Gprim):
            self.skipped[prim.GetTypeName()] = self.skipped.get(prim.GetTypeName(), 0) + 1
        node = self.add_node(prim.GetName(), parent, matrix, geometry)
        for child in prim.GetFilteredChildren(_predicate()):
            self.walk(child, node)

    def report_skipped(self) -> None:
        if self.skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.skipped.items()))
            self.warnings.append(f"skipped prims that are not meshes or points: {kinds}")

    def mesh(self, mesh) -> str | None:
        from pxr import UsdGeom

        points = _array(mesh.GetPointsAttr().Get(self.time), (-1, 3))
        counts = _array(mesh.GetFaceVertexCountsAttr().Get(self.time), (-1,), np.int64)
        indices = _array(mesh.GetFaceVertexIndicesAttr().Get(self.time), (-1,), np.int64)
        if len(points) == 0 or len(counts) == 0 or counts.sum() != len(indices):
            self.skipped["empty or malformed Mesh"] = (
                self.skipped.get("empty or malformed Mesh", 0) + 1
            )
            return None
        corners = _fan_triangles(counts)
        if mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
            corners = corners[:, ::-1]
        material, uv_name = self.material(mesh.GetPrim())
        uv = self.uv(mesh, uv_name, len(points), len(indices))
        if uv is not None and uv[1] == "corner":
            # face-varying UVs: one vertex per corner, welded back where UVs agree
            vertices, faces, uv_values = points[indices], corners, uv[0]
        else:
            vertices, faces = points, indices[corners]
            uv_values = uv[0] if uv is not None else None
        visual = trimesh.visual.TextureVisuals(uv=uv_values, material=material)
        geometry = trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)
        if uv is not None and uv[1] == "corner":
            geometry.merge_vertices(merge_tex=False, merge_norm=True)
        name = trimesh.util.unique_name(mesh.GetPrim().GetName(), self.scene.geometry)
        self.scene.geometry[name] = geometry
        return name

    def points(self, points) -> str | None:
        positions = _array(points.GetPointsAttr().Get(self.time), (-1, 3))
        if len(positions) == 0:
            return None
        name = trimesh.util.unique_name(points.GetPrim().GetName(), self.scene.geometry)
        self.scene.geometry[name] = trimesh.PointCloud(positions)
        return name

    def uv(self, mesh, name: str | None, point_count: int, corner_count: int):
        """(uv array, "point" or "corner") for the texture's primvar, or None."""
        from pxr import Sdf, UsdGeom

        primvars = UsdGeom.PrimvarsAPI(mesh.GetPrim())
        candidates = [primvars.GetPrimvar(name)] if name else []
        candidates += [
            primvar
            for primvar in primvars.GetPrimvarsWithValues()
            if primvar.GetTypeName()
            in (Sdf.ValueTypeNames.TexCoord2fArray, Sdf.ValueTypeNames.Float2Array)
        ]
        for primvar in candidates:
            if not primvar or not primvar.HasValue():
                continue
            values = _array(primvar.ComputeFlattened(self.time), (-1, 2))
            interpolation = primvar.GetInterpolation()
            if interpolation == UsdGeom.Tokens.faceVarying and len(values) == corner_count:
                return values, "corner"
            if (
                interpolation in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying)
                and len(values) == point_count
            ):
                return values, "point"
        return None

    def material(self, prim) -> tuple[trimesh.visual.material.PBRMaterial, str | None]:
        """The bound UsdPreviewSurface (or displayColor) as a PBR material, and the UV primvar
        its texture reads."""
        from pxr import UsdGeom, UsdShade

        bound, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        key = str(bound.GetPath()) if bound else None
        if key is None:
            colour = UsdGeom.PrimvarsAPI(prim).GetPrimvar("displayColor")
            values = (
                _array(colour.ComputeFlattened(self.time), (-1, 3))
                if colour and colour.HasValue()
                else []
            )
            rgb = values[0] if len(values) else (0.8, 0.8, 0.8)
            key = "displayColor_" + "_".join(f"{c:.3f}" for c in rgb)
            if key not in self.materials:
                self.materials[key] = _pbr(key, rgb, 1.0, 0.0, 0.5, None)
            return self.materials[key], None
        if key not in self.materials:
            self.materials[key] = self._preview_surface(bound)
        return self.materials[key], self.uv_names.get(key)

    def _preview_surface(self, material) -> trimesh.visual.material.PBRMaterial:
        shader = material.ComputeSurfaceSource()[0]
        name = material.GetPrim().GetName()
        if not shader or shader.GetIdAttr().Get() != "UsdPreviewSurface":
            self.warnings.append(f"material '{name}' is not a UsdPreviewSurface; used grey")
            return _pbr(name, (0.8, 0.8, 0.8), 1.0, 0.0, 0.5, None)
        values = {
            key: _input_value(shader, key)
            for key in ("diffuseColor", "opacity", "metallic", "roughness")
        }
        image, uv_name = self._texture(shader, name)
        self.uv_names[str(material.GetPath())] = uv_name
        # a texture replaces the diffuse colour rather than tinting it
        diffuse = (1.0, 1.0, 1.0) if image is not None else values["diffuseColor"]
        return _pbr(
            name,
            diffuse if diffuse is not None else (0.8, 0.8, 0.8),
            values["opacity"] if values["opacity"] is not None else 1.0,
            values["metallic"] if values["metallic"] is not None else 0.0,
            values["roughness"] if values["roughness"] is not None else 0.5,
            image,
        )

    def _texture(self, shader, material_name: str):
        """(PIL image, UV primvar name) of the texture feeding diffuseColor, or (None, None)."""
        from pxr import Ar, UsdShade

        source = shader.GetInput("diffuseColor")
        if not source or not source.HasConnectedSource():
            return None, None
        texture = UsdShade.Shader(source.GetConnectedSources()[0][0].source.GetPrim())
        file_input = texture.GetInput("file")
        asset = file_input.Get() if file_input else None
        if asset is None:
            return None, None
        uv_name = None
        st = texture.GetInput("st")
        if st and st.HasConnectedSource():
            reader = UsdShade.Shader(st.GetConnectedSources()[0][0].source.GetPrim())
            varname = reader.GetInput("varname")
            uv_name = str(varname.Get()) if varname and varname.Get() else None
        data = None
        if asset.resolvedPath and not inside_folder(asset.resolvedPath, self.root):
            self.warnings.append(
                f"texture '{asset.path}' of material '{material_name}' is outside the model's"
                " folder; not read"
            )
            return None, uv_name
        if asset.resolvedPath:
            opened = Ar.GetResolver().OpenAsset(Ar.ResolvedPath(asset.resolvedPath))
            data = bytes(opened.GetBuffer()) if opened else None
        if data is None:
            # Windows-style or otherwise unresolvable paths: look next to the layers
            for directory in self.directories:
                found = find_file(directory, asset.path)
                if found is not None:
                    data = found.read_bytes()
                    break
        if data is None:
            self.warnings.append(f"texture '{asset.path}' of material '{material_name}' not found")
            return None, uv_name
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        return image, uv_name


def _pbr(name, rgb, opacity, metallic, roughness, image) -> trimesh.visual.material.PBRMaterial:
    rgba = [*(float(c) for c in rgb[:3]), float(opacity)]
    return trimesh.visual.material.PBRMaterial(
        name=name,
        baseColorFactor=[round(c * 255) for c in rgba],
        baseColorTexture=image,
        metallicFactor=float(metallic),
        roughnessFactor=float(roughness),
        alphaMode="BLEND" if opacity < 1.0 else None,
    )


def _input_value(shader, name: str):
    shader_input = shader.GetInput(name)
    if not shader_input or shader_input.HasConnectedSource():
        return None
    value = shader_input.Get()
    if value is None:
        return None
    return tuple(value) if hasattr(value, "__len__") else float(value)


def _array(value, shape, dtype=np.float64) -> np.ndarray:
    if value is None:
        return np.zeros((0, *shape[1:]), dtype=dtype)
    return np.asarray(value, dtype=dtype).reshape(shape)


def _fan_triangles(counts: np.ndarray) -> np.ndarray:
    """Corner indices of a triangle fan over every polygon (polygons under 3 corners dropped)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = counts >= 3
    starts, counts = starts[keep], counts[keep]
    per_face = counts - 2
    first = np.repeat(starts, per_face)
    # k-th triangle of a face: (start, start + k + 1, start + k + 2)
    offsets = np.arange(per_face.sum()) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    return np.column_stack([first, first + offsets + 1, first + offsets + 2])


# -- writing ---------------------------------------------------------------------------


def write_usd(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write .usd/.usdc (binary) or .usda (text) with textures in ``<name>_textures/``."""
    textures = path.with_name(f"{path.stem}_textures")
    written = _write_stage(scene, path, textures, options)
    return [path, *written]


def write_usdz(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write a .usdz package (a .usdc and its textures, as AR viewers expect)."""
    from pxr import Sdf, UsdUtils

    with tempfile.TemporaryDirectory(prefix="usdz-") as folder:
        layer = Path(folder) / f"{path.stem}.usdc"
        _write_stage(scene, layer, Path(folder) / "textures", options)
        if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(layer)), str(path)):
            raise OSError("USD could not create the .usdz package")
    return [path]


def _write_stage(scene: Scene, path: Path, textures: Path, options: SaveOptions) -> list[Path]:
    from pxr import Usd, UsdGeom

    if path.exists():
        path.unlink()  # CreateNew refuses to replace a file
    stage = Usd.Stage.CreateNew(str(path))
    # io.save has put the scene into the unit and up axis this stage declares
    up_axis = UsdGeom.Tokens.z if scene.up_axis == "z" else UsdGeom.Tokens.y
    UsdGeom.SetStageUpAxis(stage, up_axis)
    UsdGeom.SetStageMetersPerUnit(stage, float(scene.unit or 1.0))
    root = UsdGeom.Xform.Define(stage, "/Root")
    stage.SetDefaultPrim(root.GetPrim())
    writer = _StageWriter(stage, scene.trimesh_scene, textures, path.parent, options)
    # every node below the base frame becomes an Xform or a referencing Mesh
    graph = scene.trimesh_scene.graph
    for child in graph.transforms.children.get(graph.base_frame, []):
        writer.node(child, "/Root")
    stage.GetRootLayer().Save()
    logger.debug(
        "USD %s: %d meshes, %d materials", path.name, len(writer.prototypes), len(writer.materials)
    )
    return writer.written


class _StageWriter:
    def __init__(
        self, stage, scene: trimesh.Scene, textures: Path, base: Path, options: SaveOptions
    ):
        from pxr import Sdf

        self.stage, self.scene, self.textures, self.base = stage, scene, textures, base
        self.options = options
        self.prototypes: dict[str, str] = {}
        self.materials: dict[int, str] = {}
        self.written: list[Path] = []
        # abstract: composed into placements by reference, never drawn by itself
        stage.CreateClassPrim("/Root/Prototypes")
        stage.DefinePrim("/Root/Materials", "Scope")
        self.names: dict[str, set] = {}
        self._sdf = Sdf

    def _child_path(self, parent: str, name: str) -> str:
        from pxr import Tf

        taken = self.names.setdefault(parent, set())
        base = Tf.MakeValidIdentifier(name or "node")
        candidate, index = base, 1
        while candidate in taken:
            candidate, index = f"{base}_{index}", index + 1
        taken.add(candidate)
        return f"{parent}/{candidate}"

    def node(self, node: str, parent: str) -> None:
        from pxr import Gf, UsdGeom

        graph = self.scene.graph
        matrix, geometry = graph.get(node, graph.transforms.parents[node])
        children = graph.transforms.children.get(node, [])
        path = self._child_path(parent, node)
        prim_path = path
        xform = UsdGeom.Xform.Define(self.stage, path)
        xform.AddTransformOp().Set(Gf.Matrix4d(np.asarray(matrix, dtype=np.float64).T.tolist()))
        if geometry is not None and geometry in self.scene.geometry:
            prototype = self.prototype(geometry)
            if prototype is not None:
                mesh_path = (
                    self._child_path(prim_path, "mesh")
                    if children
                    else self._child_path(prim_path, geometry)
                )
                placed = self.stage.DefinePrim(mesh_path)
                placed.GetReferences().AddInternalReference(prototype)
        for child in children:
            self.node(child, prim_path)

    def prototype(self, name: str) -> str | None:
        from pxr import Sdf, UsdGeom, UsdShade, Vt

        if name in self.prototypes:
            return self.prototypes[name]
        geometry = self.scene.geometry[name]
        path = self._child_path("/Root/Prototypes", name)
        if isinstance(geometry, trimesh.PointCloud):
            points = UsdGeom.Points.Define(self.stage, path)
            points.CreatePointsAttr(
                Vt.Vec3fArray.FromNumpy(np.asarray(geometry.vertices, dtype=np.float32))
            )
        elif isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            mesh = UsdGeom.Mesh.Define(self.stage, path)
            mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
            mesh.CreatePointsAttr(
                Vt.Vec3fArray.FromNumpy(np.asarray(geometry.vertices, dtype=np.float32))
            )
            mesh.CreateFaceVertexCountsAttr(
                Vt.IntArray.FromNumpy(np.full(len(geometry.faces), 3, dtype=np.int32))
            )
            mesh.CreateFaceVertexIndicesAttr(
                Vt.IntArray.FromNumpy(np.asarray(geometry.faces, dtype=np.int32).ravel())
            )
            if self.options.include_normals:
                mesh.CreateNormalsAttr(
                    Vt.Vec3fArray.FromNumpy(np.asarray(geometry.vertex_normals, dtype=np.float32))
                )
                mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
            uv = getattr(geometry.visual, "uv", None)
            if uv is not None and len(uv) == len(geometry.vertices):
                primvar = UsdGeom.PrimvarsAPI(mesh.GetPrim()).CreatePrimvar(
                    "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
                )
                primvar.Set(Vt.Vec2fArray.FromNumpy(np.asarray(uv, dtype=np.float32)))
            rgba = material_colour(geometry)
            mesh.CreateDisplayColorPrimvar(UsdGeom.Tokens.constant).Set(
                Vt.Vec3fArray([tuple(float(c) for c in rgba[:3])])
            )
            material = self.material(geometry, uv is not None)
            UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(
                UsdShade.Material.Get(self.stage, material)
            )
        else:
            return None
        self.prototypes[name] = path
        return path

    def material(self, geometry, has_uv: bool) -> str:
        from pxr import Sdf, UsdShade

        source = getattr(geometry.visual, "material", None)
        key = id(source) if source is not None else 0
        if key in self.materials:
            return self.materials[key]
        name = getattr(source, "name", None) or "material"
        path = self._child_path("/Root/Materials", name)
        material = UsdShade.Material.Define(self.stage, path)
        shader = UsdShade.Shader.Define(self.stage, f"{path}/PreviewSurface")
        shader.CreateIdAttr("UsdPreviewSurface")
        rgba = material_colour(geometry)
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(
            tuple(float(c) for c in rgba[:3])
        )
        shader.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(float(rgba[3]))
        shader.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(
            float(getattr(source, "metallicFactor", None) or 0.0)
        )
        roughness = getattr(source, "roughnessFactor", None)
        shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(
            float(0.5 if roughness is None else roughness)
        )
        material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
        image = material_image(geometry)
        if image is not None and has_uv:
            self._texture(material, shader, path, image, name)
        self.materials[key] = path
        return path

    def _texture(self, material, shader, path: str, image, name: str) -> None:
        from pxr import Sdf, UsdShade

        self.textures.mkdir(parents=True, exist_ok=True)
        file_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png"
        target = self.textures / file_name
        image.save(target, format="PNG")
        self.written.append(target)
        reader = UsdShade.Shader.Define(self.stage, f"{path}/PrimvarReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        texture = UsdShade.Shader.Define(self.stage, f"{path}/DiffuseTexture")
        texture.CreateIdAttr("UsdUVTexture")
        relative = target.relative_to(self.base).as_posix()
        texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{relative}")
        texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        shader.GetInput("diffuseColor").ConnectToSource(texture.ConnectableAPI(), "rgb")


READERS = {"usd": read_usd, "usda": read_usd, "usdc": read_usd, "usdz": read_usd}
WRITERS = {"usd": write_usd, "usda": write_usd, "usdc": write_usd, "usdz": write_usdz}
