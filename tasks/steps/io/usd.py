"""OpenUSD in and out (.usd, .usda, .usdc, .usdz) through Pixar's `pxr` (usd-core).

Reading composes the stage first, so layered assets (sublayers, references,
payloads) arrive resolved, from the stage's own folder only (a stage naming a layer
elsewhere fails; a texture elsewhere is skipped with a warning); every imageable prim
becomes a scene node with its local transform and name, meshes are triangulated, and
materials come from UsdPreviewSurface (diffuse colour or texture, metallic, roughness,
opacity) or else ``primvars:displayColor``. Instancing stays: the instances of one
prototype (instanceable prims, PointInstancer prototypes) and the prims referencing one
mesh unchanged become one mesh placed at each. The stage's ``metersPerUnit`` and ``upAxis``
go on the Scene, and `io.load` turns it into metres and +Y up. Writing declares both,
puts each distinct mesh once under an abstract ``class`` prim and references it from
every placement (names USD cannot spell kept as display names), with UsdPreviewSurface
materials; .usdz is a package of a .usdc and
its textures.
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

    # instance proxies make instanced prims visible to the walk (point instancers are read
    # by `_StageReader.instances`); each instance gets its nodes, and
    # `_StageReader.geometry` shares their meshes
    return Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)


# where a prim sits and whether it is drawn, not what its mesh is: a placement that authors
# only these (a reference to a prototype moved elsewhere) shows the prototype's mesh
_PLACEMENT_PROPERTIES = re.compile(r"xformOp:.*|xformOpOrder|visibility|purpose|material:binding.*")

# custom data of the root prim the writer adds (USD wants one default prim), so that the
# reader does not add it to the scene's tree
_WRAPPER = "pixyz:wrapper"


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
        self.uv_transforms: dict[str, tuple | None] = {}
        self.images: dict[str, object] = {}
        self.skipped: dict[str, int] = {}
        # geometry read per mesh source (`_source`), so N placements share one mesh
        self.sources: dict[tuple, str] = {}
        self.in_prototype = False  # walking a PointInstancer's prototype for an instance
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
        children = prim.GetFilteredChildren(_predicate())
        if prim.GetTypeName() in ("", "Scope") and not any(
            child.IsA(UsdGeom.Imageable) or child.GetTypeName() in ("", "Scope")
            for child in children
        ):
            return  # a folder of materials (or of nothing) is no node of the scene
        if prim.GetCustomDataByKey(_WRAPPER) and not UsdGeom.Xformable(prim).GetOrderedXformOps():
            # the root this module's writer adds: its children are the scene's top nodes
            for child in children:
                self.walk(child, parent)
            return
        imageable = UsdGeom.Imageable(prim)
        if imageable and self._invisible(imageable):
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
        if prim.IsA(UsdGeom.Mesh) or prim.IsA(UsdGeom.Points):
            geometry = self.geometry(prim)
        elif prim.IsA(UsdGeom.Gprim):
            self.skipped[prim.GetTypeName()] = self.skipped.get(prim.GetTypeName(), 0) + 1
        # a display name keeps what a prim name cannot hold ("l-bracket", "Part 1")
        node = self.add_node(prim.GetDisplayName() or prim.GetName(), parent, matrix, geometry)
        if prim.IsA(UsdGeom.PointInstancer):
            # its children are its prototypes, drawn only where it places them
            self.instances(UsdGeom.PointInstancer(prim), node)
            return
        for child in children:
            self.walk(child, node)

    def _invisible(self, imageable) -> bool:
        from pxr import UsdGeom

        if self.in_prototype:
            # prototypes are often kept under an invisible scope: only their own opinion counts
            return imageable.GetVisibilityAttr().Get(self.time) == UsdGeom.Tokens.invisible
        return imageable.ComputeVisibility(self.time) == UsdGeom.Tokens.invisible

    def instances(self, instancer, parent: str) -> None:
        """A node per shown instance of a PointInstancer, its prototype's tree below it: each
        prototype's meshes are read once and placed at every instance."""
        from pxr import UsdGeom

        transforms = instancer.ComputeInstanceTransformsAtTime(
            self.time,
            self.time,
            UsdGeom.PointInstancer.ExcludeProtoXform,  # the walk applies the prototype's own
            UsdGeom.PointInstancer.IgnoreMask,
        )
        indices = list(instancer.GetProtoIndicesAttr().Get(self.time) or [])
        if len(transforms) != len(indices):
            self.skipped["malformed PointInstancer"] = (
                self.skipped.get("malformed PointInstancer", 0) + 1
            )
            return
        targets = instancer.GetPrototypesRel().GetForwardedTargets()
        prototypes = [self.stage.GetPrimAtPath(target) for target in targets]
        shown = instancer.ComputeMaskAtTime(self.time) or [True] * len(indices)
        name = instancer.GetPrim().GetName()
        outer, self.in_prototype = self.in_prototype, True
        try:
            for number, (matrix, index, visible) in enumerate(
                zip(transforms, indices, shown, strict=True)
            ):
                if visible and 0 <= index < len(prototypes) and prototypes[index]:
                    node = self.add_node(f"{name}_{number}", parent, np.array(matrix).T)
                    self.walk(prototypes[index], node)
        finally:
            self.in_prototype = outer

    def report_skipped(self) -> None:
        if self.skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.skipped.items()))
            self.warnings.append(f"skipped prims that are not meshes or points: {kinds}")

    def geometry(self, prim) -> str | None:
        """The geometry a Mesh or Points prim shows, read once per source: the instances of
        one prototype, and the prims referencing one prim without changing it, share it."""
        from pxr import UsdGeom

        key, name = self._source(prim)
        if key in self.sources:
            return self.sources[key]
        if prim.IsA(UsdGeom.Mesh):
            found = self.mesh(UsdGeom.Mesh(prim), name)
        else:
            found = self.points(UsdGeom.Points(prim), name)
        if found is not None:
            self.sources[key] = found
        return found

    def _source(self, prim) -> tuple[tuple, str]:
        """(key, name) of the data a geometry prim shows. The key is the layer specs that
        author it (an instance proxy has its prototype's; a placement authoring only a
        transform adds none) and the bound material, which an instance may choose; two prims
        with one key compose the same mesh. The name is the strongest such spec's."""
        from pxr import UsdShade

        specs = [
            spec
            for spec in prim.GetPrimStack()
            if any(not _PLACEMENT_PROPERTIES.fullmatch(p.name) for p in spec.properties)
        ]
        if not specs:  # nothing authored: an empty prim, never shared
            return (str(prim.GetPath()),), prim.GetName()
        bound, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        key = (
            prim.GetTypeName(),
            tuple((spec.layer.identifier, str(spec.path)) for spec in specs),
            str(bound.GetPath()) if bound else None,
        )
        name = specs[0].GetInfo("displayName") if specs[0].HasInfo("displayName") else ""
        return key, name or specs[0].path.name

    def mesh(self, mesh, name: str) -> str | None:
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
        transform = self._uv_transform(mesh.GetPrim())
        if uv is not None and transform is not None:
            uv = (_apply_uv_transform(uv[0], transform), uv[1])
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
        name = trimesh.util.unique_name(name, self.scene.geometry)
        self.scene.geometry[name] = geometry
        return name

    def points(self, points, name: str) -> str | None:
        positions = _array(points.GetPointsAttr().Get(self.time), (-1, 3))
        if len(positions) == 0:
            return None
        name = trimesh.util.unique_name(name, self.scene.geometry)
        self.scene.geometry[name] = trimesh.PointCloud(positions)
        return name

    def _uv_transform(self, prim):
        """The UsdTransform2d between the bound material's textures and their UVs, if any;
        glTF keeps no texture transform here, so it is baked into the UVs."""
        from pxr import UsdShade

        bound, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        return self.uv_transforms.get(str(bound.GetPath())) if bound else None

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
        its textures read. ``doubleSided`` lives on the USD mesh and on the glTF material, so
        a material bound to both kinds of mesh becomes two."""
        from pxr import UsdGeom, UsdShade

        bound, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        key = str(bound.GetPath()) if bound else None
        double_sided = bool(
            prim.IsA(UsdGeom.Gprim) and UsdGeom.Gprim(prim).GetDoubleSidedAttr().Get()
        )
        if key is None:
            colour = UsdGeom.PrimvarsAPI(prim).GetPrimvar("displayColor")
            values = (
                _array(colour.ComputeFlattened(self.time), (-1, 3))
                if colour and colour.HasValue()
                else []
            )
            rgb = values[0] if len(values) else (0.8, 0.8, 0.8)
            key = "displayColor_" + "_".join(f"{c:.3f}" for c in rgb)
            cached = f"{key}|double" if double_sided else key
            if cached not in self.materials:
                self.materials[cached] = _pbr(key, rgb, 1.0, 0.0, 0.5, None)
                self.materials[cached].doubleSided = double_sided
            return self.materials[cached], None
        cached = f"{key}|double" if double_sided else key
        if cached not in self.materials:
            self.materials[cached] = self._preview_surface(bound)
            self.materials[cached].doubleSided = double_sided
        return self.materials[cached], self.uv_names.get(key)

    def _preview_surface(self, material) -> trimesh.visual.material.PBRMaterial:
        """Every UsdPreviewSurface input glTF has a place for: colours and factors, and the
        textures feeding them (a UsdUVTexture's ``scale`` is the glTF factor it carries)."""
        shader = material.ComputeSurfaceSource()[0]
        name = material.GetPrim().GetName()
        if not shader or shader.GetIdAttr().Get() != "UsdPreviewSurface":
            self.warnings.append(f"material '{name}' is not a UsdPreviewSurface; used grey")
            return _pbr(name, (0.8, 0.8, 0.8), 1.0, 0.0, 0.5, None)
        # 1. the texture (UsdUVTexture, output) behind each input, and the constants
        feeds = {key: _texture_feeding(shader, key) for key in _SURFACE_INPUTS}
        values = {key: _input_value(shader, key) for key in _SURFACE_INPUTS}
        images = {
            key: self._image(feed[0], name) for key, feed in feeds.items() if feed is not None
        }
        self._remember_uv(material, feeds)
        pbr = trimesh.visual.material.PBRMaterial(name=name)
        # 2. base colour and alpha: a texture's scale is the glTF factor
        rgba = [*(values["diffuseColor"] or (0.8, 0.8, 0.8)), 1.0]
        if images.get("diffuseColor") is not None:
            pbr.baseColorTexture = images["diffuseColor"]
            rgba = list(_scale(feeds["diffuseColor"][0]))
        opacity = values["opacity"]
        if feeds["opacity"] is not None:
            opacity = _scale(feeds["opacity"][0])[3]
        rgba[3] = 1.0 if opacity is None else float(opacity)
        pbr.baseColorFactor = [round(float(c) * 255) for c in rgba]
        threshold = _input_value(shader, "opacityThreshold")
        if threshold:
            pbr.alphaMode, pbr.alphaCutoff = "MASK", float(threshold)
        elif feeds["opacity"] is not None or rgba[3] < 1.0:
            pbr.alphaMode = "BLEND"
        # 3. metallic and roughness: glTF packs them in B and G of one texture
        metallic, roughness = values["metallic"], values["roughness"]
        if feeds["metallic"] is not None:
            metallic = _scale(feeds["metallic"][0])[_CHANNELS[feeds["metallic"][1]]]
        if feeds["roughness"] is not None:
            roughness = _scale(feeds["roughness"][0])[_CHANNELS[feeds["roughness"][1]]]
        pbr.metallicFactor = 0.0 if metallic is None else float(metallic)
        pbr.roughnessFactor = 0.5 if roughness is None else float(roughness)
        pbr.metallicRoughnessTexture = _metallic_roughness(feeds, images)
        # 4. normal (UsdPreviewSurface decodes 2x-1 by the texture's scale and bias, as glTF
        # does by definition), occlusion (glTF reads R) and emission
        pbr.normalTexture = images.get("normal")
        if images.get("occlusion") is not None:
            pbr.occlusionTexture = _channel_image(images["occlusion"], feeds["occlusion"][1], "r")
        emissive = values["emissiveColor"]
        if images.get("emissiveColor") is not None:
            pbr.emissiveTexture = images["emissiveColor"]
            emissive = _scale(feeds["emissiveColor"][0])[:3]
        if emissive is not None and any(emissive):
            pbr.emissiveFactor = [float(c) for c in emissive[:3]]
        return pbr

    def _remember_uv(self, material, feeds: dict) -> None:
        """Record the UV primvar (and UsdTransform2d) the material's textures read."""
        readers = [_uv_source(feed[0]) for feed in feeds.values() if feed is not None]
        readers = [reader for reader in readers if reader[0] is not None]
        key = str(material.GetPath())
        self.uv_names[key] = readers[0][0] if readers else None
        self.uv_transforms[key] = readers[0][1] if readers else None
        if len({(name, transform) for name, transform in readers}) > 1:
            self.warnings.append(
                f"material '{material.GetPrim().GetName()}' reads its textures through"
                " different UV sets or transforms; all use the base colour's"
            )

    def _image(self, texture, material_name: str):
        """The PIL image a UsdUVTexture reads (one object per file, shared), or None."""
        from pxr import Ar

        file_input = texture.GetInput("file")
        asset = file_input.Get() if file_input else None
        if asset is None:
            return None
        cache = asset.resolvedPath or asset.path
        if cache in self.images:
            return self.images[cache]
        data = None
        if asset.resolvedPath and not inside_folder(asset.resolvedPath, self.root):
            self.warnings.append(
                f"texture '{asset.path}' of material '{material_name}' is outside the model's"
                " folder; not read"
            )
            return None
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
            return None
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        self.images[cache] = image
        return image


# UsdPreviewSurface inputs with a glTF counterpart
_SURFACE_INPUTS = (
    "diffuseColor",
    "opacity",
    "metallic",
    "roughness",
    "normal",
    "occlusion",
    "emissiveColor",
)
_CHANNELS = {"r": 0, "g": 1, "b": 2, "a": 3, "rgb": 0}


def _texture_feeding(shader, name: str):
    """(UsdUVTexture shader, output name) connected to input `name`, or None."""
    from pxr import UsdShade

    shader_input = shader.GetInput(name)
    if not shader_input or not shader_input.HasConnectedSource():
        return None
    source = shader_input.GetConnectedSources()[0][0]
    texture = UsdShade.Shader(source.source.GetPrim())
    if texture.GetIdAttr().Get() != "UsdUVTexture":
        return None
    return texture, str(source.sourceName)


def _uv_source(texture) -> tuple[str | None, tuple | None]:
    """(primvar name, (scale, rotation, translation) of a UsdTransform2d or None) that a
    UsdUVTexture's ``st`` reads."""
    from pxr import UsdShade

    transform = None
    shader = texture
    for _ in range(2):  # st <- [UsdTransform2d <-] UsdPrimvarReader_float2
        st = shader.GetInput("st") if shader.GetIdAttr().Get() == "UsdUVTexture" else None
        st = st or shader.GetInput("in")
        if not st or not st.HasConnectedSource():
            return None, transform
        shader = UsdShade.Shader(st.GetConnectedSources()[0][0].source.GetPrim())
        if shader.GetIdAttr().Get() == "UsdTransform2d":
            transform = (
                tuple(_input_value(shader, "scale") or (1.0, 1.0)),
                float(_input_value(shader, "rotation") or 0.0),
                tuple(_input_value(shader, "translation") or (0.0, 0.0)),
            )
            continue
        varname = shader.GetInput("varname")
        value = varname.Get() if varname else None
        return (str(value) if value else None), transform
    return None, transform


def _scale(texture) -> tuple[float, float, float, float]:
    """A UsdUVTexture's ``scale`` (the glTF factor it carries); 1 where not authored."""
    value = _input_value(texture, "scale")
    return tuple(float(c) for c in value) if value is not None else (1.0, 1.0, 1.0, 1.0)


def _channel_image(image, output: str, channel: str):
    """`image` itself when its `output` channel is already where glTF reads it (`channel`),
    else a grey image of that channel."""
    if output in (channel, "rgb"):
        return image
    bands = image.convert("RGBA").split()
    return bands[_CHANNELS[output]].convert("RGB")


def _metallic_roughness(feeds: dict, images: dict):
    """glTF's metallicRoughness texture (roughness in G, metallic in B) from the textures
    feeding UsdPreviewSurface metallic and roughness: the texture itself when it is one
    packed in those channels, else the two channels combined."""
    from PIL import Image

    metallic, roughness = images.get("metallic"), images.get("roughness")
    if metallic is None and roughness is None:
        return None
    if metallic is roughness and feeds["metallic"][1] == "b" and feeds["roughness"][1] == "g":
        return metallic
    size = (metallic or roughness).size
    if metallic is not None and roughness is not None:
        size = max(metallic.size, roughness.size)

    def band(image, feed, fallback: int):
        if image is None:
            return Image.new("L", size, fallback)
        channel = image.convert("RGBA").split()[_CHANNELS[feed[1]]]
        return channel.resize(size) if channel.size != size else channel

    # the factors stay in metallicFactor/roughnessFactor, so an absent map reads as 1
    return Image.merge(
        "RGB",
        (
            Image.new("L", size, 255),
            band(roughness, feeds["roughness"], 255),
            band(metallic, feeds["metallic"], 255),
        ),
    )


def _apply_uv_transform(uv: np.ndarray, transform) -> np.ndarray:
    """UsdTransform2d on UVs: scale, then rotate (degrees, counter-clockwise), then translate."""
    scale, rotation, translation = transform
    angle = np.radians(rotation)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (uv * np.asarray(scale)) @ rotate.T + np.asarray(translation)


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
    if writer.dropped_textures:
        scene.warn(
            f"dropped the textures of {writer.dropped_textures} material(s) whose meshes have"
            " no UV coordinates"
        )
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
        self.images: dict[int, Path] = {}
        self.dropped_textures = 0
        stage.GetPrimAtPath("/Root").SetCustomDataByKey(_WRAPPER, True)
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
        """Write `node` under `parent`. A leaf showing a mesh is one prim that references the
        mesh's prototype and carries the node's name and transform, so reading it back gives
        the same node; a node with children is an Xform, its own mesh a child ``mesh``."""
        from pxr import Gf, UsdGeom

        graph = self.scene.graph
        matrix, geometry = graph.get(node, graph.transforms.parents[node])
        children = graph.transforms.children.get(node, [])
        path = self._child_path(parent, node)
        prototype = None
        if geometry is not None and geometry in self.scene.geometry:
            prototype = self.prototype(geometry)
        if prototype is not None and not children:
            placed = self.stage.DefinePrim(path)
            placed.GetReferences().AddInternalReference(prototype)
            xform = UsdGeom.Xformable(placed)
        else:
            xform = UsdGeom.Xform.Define(self.stage, path)
            if prototype is not None:
                placed = self.stage.DefinePrim(self._child_path(path, "mesh"))
                placed.GetReferences().AddInternalReference(prototype)
        xform.AddTransformOp().Set(Gf.Matrix4d(np.asarray(matrix, dtype=np.float64).T.tolist()))
        _keep_name(xform.GetPrim(), node)
        for child in children:
            self.node(child, path)

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
            if getattr(getattr(geometry.visual, "material", None), "doubleSided", False):
                mesh.CreateDoubleSidedAttr(True)
            UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(
                UsdShade.Material.Get(self.stage, material)
            )
        else:
            return None
        _keep_name(self.stage.GetPrimAtPath(path), name)
        self.prototypes[name] = path
        return path

    def material(self, geometry, has_uv: bool) -> str:
        """A UsdPreviewSurface for the mesh's material, with one UsdUVTexture per glTF map.
        A texture's ``scale`` carries the glTF factor it is multiplied by, so reading the
        stage back gives the same factors and maps."""
        from pxr import Sdf, UsdShade

        source = getattr(geometry.visual, "material", None)
        key = id(source) if source is not None else 0
        if key in self.materials:
            return self.materials[key]
        if source is not None and not isinstance(source, trimesh.visual.material.PBRMaterial):
            source = source.to_pbr()  # OBJ's and PLY's simple materials
        name = getattr(source, "name", None) or "material"
        path = self._child_path("/Root/Materials", name)
        material = UsdShade.Material.Define(self.stage, path)
        shader = UsdShade.Shader.Define(self.stage, f"{path}/PreviewSurface")
        shader.CreateIdAttr("UsdPreviewSurface")
        # 1. constants: colours and factors, alpha as UsdPreviewSurface expects it
        rgba = material_colour(geometry)
        if source is not None and source.baseColorFactor is None:
            rgba = np.ones(4)  # glTF's default, which leaves a texture untinted
        mode = getattr(source, "alphaMode", None) or "OPAQUE"
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(
            tuple(float(c) for c in rgba[:3])
        )
        opacity = float(rgba[3]) if mode != "OPAQUE" else 1.0
        shader.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(opacity)
        if mode == "MASK":
            cutoff = getattr(source, "alphaCutoff", None)
            shader.CreateInput("opacityThreshold", Sdf.ValueTypeNames.Float).Set(
                float(0.5 if cutoff is None else cutoff)
            )
        # unset factors: glTF's 1.0 where they scale a texture; else a dielectric, as the
        # readers of untextured formats mean
        textured = getattr(source, "metallicRoughnessTexture", None) is not None
        metallic = getattr(source, "metallicFactor", None)
        metallic = float((1.0 if textured else 0.0) if metallic is None else metallic)
        roughness = getattr(source, "roughnessFactor", None)
        roughness = float((1.0 if textured else 0.5) if roughness is None else roughness)
        shader.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(metallic)
        shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(roughness)
        emissive = getattr(source, "emissiveFactor", None)
        emissive = [float(c) for c in emissive[:3]] if emissive is not None else [0.0] * 3
        shader.CreateInput("emissiveColor", Sdf.ValueTypeNames.Color3f).Set(tuple(emissive))
        material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
        # 2. textures, each feeding the inputs glTF reads from its channels
        maps = _texture_maps(source, geometry, rgba, mode, metallic, roughness, emissive)
        if maps and not has_uv:
            self.dropped_textures += 1
        elif maps:
            reader = UsdShade.Shader.Define(self.stage, f"{path}/PrimvarReader")
            reader.CreateIdAttr("UsdPrimvarReader_float2")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
            for role, image, colour_space, scale, bias, feeds in maps:
                texture = self._texture(path, role, image, name, colour_space, scale, bias)
                texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
                    reader.ConnectableAPI(), "result"
                )
                for output, target in feeds:
                    kind = (
                        Sdf.ValueTypeNames.Float3 if output == "rgb" else Sdf.ValueTypeNames.Float
                    )
                    texture.CreateOutput(output, kind)
                    surface_input = shader.GetInput(target) or shader.CreateInput(
                        target, Sdf.ValueTypeNames.Find(_INPUT_TYPES[target])
                    )
                    surface_input.ConnectToSource(texture.ConnectableAPI(), output)
        self.materials[key] = path
        return path

    def _texture(self, path: str, role: str, image, name: str, colour_space: str, scale, bias):
        """A UsdUVTexture reading `image`, written once per image as a PNG beside the stage."""
        from pxr import Sdf, UsdShade

        target = self.images.get(id(image))
        if target is None:
            self.textures.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}_{role}")
            target = self.textures / f"{stem}.png"
            index = 1
            while target in self.written:
                target, index = self.textures / f"{stem}_{index}.png", index + 1
            image.save(target, format="PNG")
            self.written.append(target)
            self.images[id(image)] = target
        texture = UsdShade.Shader.Define(self.stage, f"{path}/{role[0].upper()}{role[1:]}Texture")
        texture.CreateIdAttr("UsdUVTexture")
        relative = target.relative_to(self.base).as_posix()
        texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{relative}")
        texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(colour_space)
        if scale is not None:
            texture.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(tuple(scale))
        if bias is not None:
            texture.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(tuple(bias))
        return texture


_INPUT_TYPES = {
    "diffuseColor": "color3f",
    "opacity": "float",
    "metallic": "float",
    "roughness": "float",
    "normal": "normal3f",
    "occlusion": "float",
    "emissiveColor": "color3f",
}


def _texture_maps(source, geometry, rgba, mode: str, metallic, roughness, emissive) -> list:
    """(role, image, colour space, scale, bias, [(output, surface input)]) for each map of
    a PBR material: base colour (and its alpha), metallicRoughness (B metallic, G roughness),
    normal (2x-1), occlusion (R) and emission."""
    maps = []
    base = material_image(geometry)
    if base is not None:
        feeds = [("rgb", "diffuseColor")]
        if mode != "OPAQUE" and _has_alpha(base):
            feeds.append(("a", "opacity"))
        maps.append(("baseColor", base, "sRGB", [float(c) for c in rgba], None, feeds))
    image = getattr(source, "metallicRoughnessTexture", None)
    if image is not None:
        scale = (1.0, roughness, metallic, 1.0)
        maps.append(
            (
                "metallicRoughness",
                image,
                "raw",
                scale,
                None,
                [("b", "metallic"), ("g", "roughness")],
            )
        )
    image = getattr(source, "normalTexture", None)
    if image is not None:
        maps.append(
            (
                "normal",
                image,
                "raw",
                (2.0, 2.0, 2.0, 1.0),
                (-1.0, -1.0, -1.0, 0.0),
                [("rgb", "normal")],
            )
        )
    image = getattr(source, "occlusionTexture", None)
    if image is not None:
        maps.append(("occlusion", image, "raw", None, None, [("r", "occlusion")]))
    image = getattr(source, "emissiveTexture", None)
    if image is not None:
        maps.append(("emissive", image, "sRGB", (*emissive, 1.0), None, [("rgb", "emissiveColor")]))
    return maps


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _keep_name(prim, name: str) -> None:
    """Give `prim` the display name `name` where its composed name would say otherwise (a
    name USD cannot spell, "l-bracket"; a placement showing its prototype's)."""
    if (prim.GetDisplayName() or prim.GetName()) != name:
        prim.SetDisplayName(name)


READERS = {"usd": read_usd, "usda": read_usd, "usdc": read_usd, "usdz": read_usd}
WRITERS = {"usd": write_usd, "usda": write_usd, "usdc": write_usd, "usdz": write_usdz}
