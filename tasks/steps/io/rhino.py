"""Rhino 3DM in through rhino3dm (openNURBS): layers, object names, materials, blocks, unit.

The tree is the file's layer table: each layer a node below its parent layer
(``Parts::Bolts`` is ``Bolts`` below ``Parts``), each object a node below its layer,
named after the object (or its kind: ``Brep``, ``Mesh_1``). A block instance is a node
named after its block definition with the definition's objects below it; a definition
placed N times (nested blocks too) is meshed once. Meshes are read as they are;
B-reps and extrusions through the render meshes Rhino saved with them (rhino3dm has no
mesher), SubD objects through their control net subdivided three times (``low``: twice,
``high``/``very_high``: four times). Objects without a render mesh are skipped with a
warning that counts them, or fail the read when nothing else has a surface. Curves,
points, annotations, hatches and lights have no surface and are counted in one warning.

Each object's material is Rhino's: its own, its layer's, or (in a block) its instance's;
without one, its display colour (object, layer or instance) becomes a plain material. A
material's bitmap texture is applied when the image lies next to the file.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import find_file, read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

UNIT_METRES = {
    "Angstroms": 1e-10,
    "Nanometers": 1e-9,
    "Microns": 1e-6,
    "Millimeters": 0.001,
    "Centimeters": 0.01,
    "Decimeters": 0.1,
    "Meters": 1.0,
    "Dekameters": 10.0,
    "Hectometers": 100.0,
    "Kilometers": 1000.0,
    "Megameters": 1e6,
    "Gigameters": 1e9,
    "Microinches": 2.54e-8,
    "Mils": 2.54e-5,
    "Inches": 0.0254,
    "Feet": 0.3048,
    "Yards": 0.9144,
    "Miles": 1609.344,
    "PrinterPoints": 0.0254 / 72,
    "PrinterPicas": 0.0254 / 6,
    "NauticalMiles": 1852.0,
    "AstronomicalUnits": 1.495978707e11,
    "LightYears": 9.4607304725808e15,
    "Parsecs": 3.08567758149137e16,
}
"""Metres per unit for each `rhino3dm.UnitSystem` by name; ``None``, ``Unset`` and
``CustomUnits`` are not here (the file then declares no unit this reader knows)."""

SUBD_LEVELS = {"low": 2, "medium": 3, "high": 4, "very_high": 4}
"""Times a SubD's control net is subdivided, per tessellation preset."""

_MAX_DEPTH = 64  # deeper block nesting means a block that contains itself
_NO_SURFACE = {
    "Point": "point",
    "TextDot": "annotation",
    "Text": "annotation",
    "Leader": "annotation",
    "Hatch": "hatch",
    "Light": "light",
}
_PLURAL = {"hatch": "hatch(es)"}


def read_3dm(path: Path, options: LoadOptions) -> Scene:
    """Read a Rhino .3dm file: layer tree, object names, materials, blocks and unit."""
    import rhino3dm

    # 1. parse (openNURBS answers None for what it cannot read)
    model = rhino3dm.File3dm.Read(str(path))
    if model is None:
        raise read_error(path, "3dm", "not a 3DM file openNURBS can read")
    # 2. layers, then every object outside block definitions, below its layer
    builder = _SceneBuilder(model, path, SUBD_LEVELS.get(options.tessellation.preset, 3))
    for obj in model.Objects:
        if not obj.Attributes.IsInstanceDefinitionObject:
            builder.add(obj, builder.layer_node(obj.Attributes.LayerIndex), np.eye(4), None, 0)
    # 3. what was left out, and a clear failure if that was everything
    warnings = builder.warnings
    if builder.without_mesh:
        what = f"{builder.without_mesh} B-rep, extrusion or surface object(s)"
        why = (
            "carry no render mesh (the file was saved without them, e.g. with Rhino's "
            "'Save Small'), and rhino3dm cannot mesh them"
        )
        if not builder.scene.geometry:
            raise read_error(
                path, "3dm", f"its {what} {why}; re-save it from Rhino with render meshes"
            )
        warnings.append(f"skipped {what} that {why}")
    if builder.no_surface:
        kinds = ", ".join(
            f"{count} {_PLURAL.get(kind, kind + '(s)')}"
            for kind, count in sorted(builder.no_surface.items())
        )
        warnings.append(f"skipped objects that have no surface: {kinds}")
    unit_name = str(model.Settings.ModelUnitSystem).rsplit(".", 1)[-1]
    logger.debug(
        "3DM %s: %d layers, %d meshes, %d materials, unit %s",
        path.name,
        len(model.Layers),
        len(builder.scene.geometry),
        len(builder.materials),
        unit_name,
    )
    return Scene(
        trimesh_scene=builder.scene,
        warnings=warnings,
        unit=UNIT_METRES.get(unit_name),
        up_axis="z",
    )


@dataclass(frozen=True)
class _Look:
    """What an object is drawn with: a render material index, else a display colour."""

    material: int
    colour: tuple[int, int, int, int]


class _SceneBuilder:
    """Rhino objects into trimesh nodes: layers as groups, blocks meshed once."""

    def __init__(self, model, path: Path, subd_level: int):
        self.model = model
        self.path = path
        self.subd_level = subd_level
        self.scene = trimesh.Scene()
        self.layers = list(model.Layers)
        self.layer_by_id = {str(layer.Id): layer for layer in self.layers}
        self.layer_nodes: dict[str, str] = {}
        self.definitions = {str(d.Id): d for d in model.InstanceDefinitions}
        self.by_id = {str(obj.Attributes.Id): obj for obj in model.Objects}
        self.meshes: dict[tuple, list[str]] = {}
        self.materials: dict[tuple, trimesh.visual.material.PBRMaterial] = {}
        self.warnings: list[str] = []
        self.without_mesh = 0
        self.no_surface: Counter[str] = Counter()
        self._missing_textures: set[str] = set()

    # -- tree ------------------------------------------------------------------------

    def layer_node(self, index: int) -> str:
        """The node of a layer (by table index), made with its parent layers' nodes."""
        if not 0 <= index < len(self.layers):
            return self.scene.graph.base_frame
        return self._layer(self.layers[index], 0)

    def _layer(self, layer, depth: int) -> str:
        key = str(layer.Id)
        if key in self.layer_nodes:
            return self.layer_nodes[key]
        parent_layer = self.layer_by_id.get(str(layer.ParentLayerId))
        if parent_layer is None or depth > _MAX_DEPTH:
            parent = self.scene.graph.base_frame
        else:
            parent = self._layer(parent_layer, depth + 1)
        self.layer_nodes[key] = self._node(layer.Name or "Layer", parent, np.eye(4))
        return self.layer_nodes[key]

    def _node(self, name: str, parent: str, matrix: np.ndarray, geometry: str | None = None) -> str:
        node = trimesh.util.unique_name(name, self.scene.graph.transforms.node_data)
        extra = {"geometry": geometry} if geometry else {}
        self.scene.graph.update(frame_from=parent, frame_to=node, matrix=matrix, **extra)
        return node

    def add(self, obj, parent: str, matrix: np.ndarray, inherited: _Look | None, depth: int):
        """Place one object below `parent`: a block instance, or a mesh."""
        import rhino3dm

        geometry = obj.Geometry
        attributes = obj.Attributes
        look = self._look(attributes, inherited)
        if isinstance(geometry, rhino3dm.InstanceReference):
            self._add_instance(obj, geometry, parent, matrix, look, depth)
            return
        meshes = self._meshes(obj, look)
        if not meshes:
            return
        name = attributes.Name or type(geometry).__name__
        if len(meshes) == 1:
            self._node(name, parent, matrix, geometry=meshes[0])
            return
        node = self._node(name, parent, matrix)
        for mesh in meshes:
            self._node(f"{node}_{mesh}", node, np.eye(4), geometry=mesh)

    def _add_instance(self, obj, reference, parent, matrix, look: _Look, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ValueError("blocks are nested deeper than 64 levels (a block contains itself?)")
        definition = self.definitions.get(str(reference.ParentIdefId))
        if definition is None:
            self.warnings.append(
                f"skipped a block instance whose definition {reference.ParentIdefId} is missing"
            )
            return
        local = np.array(reference.Xform.ToFloatArray(True), dtype=np.float64).reshape(4, 4)
        name = obj.Attributes.Name or definition.Name or "Block"
        node = self._node(name, parent, matrix @ local)
        for member_id in definition.GetObjectIds():
            member = self.by_id.get(str(member_id))
            if member is not None:
                self.add(member, node, np.eye(4), look, depth + 1)

    # -- meshes ----------------------------------------------------------------------

    def _meshes(self, obj, look: _Look) -> list[str]:
        """Geometry names for one object in one look, built once however often placed."""
        key = (str(obj.Attributes.Id), look)
        if key in self.meshes:
            return self.meshes[key]
        surfaces = self._surface_meshes(obj.Geometry)
        names = []
        if surfaces:
            material = self._material(look)
            base = obj.Attributes.Name or type(obj.Geometry).__name__
            for surface in surfaces:
                name = trimesh.util.unique_name(base, self.scene.geometry)
                if isinstance(surface, trimesh.Trimesh):
                    surface.visual = self._visual(surface, material)
                # stored without a node: each placement adds its own
                self.scene.geometry[name] = surface
                names.append(name)
        self.meshes[key] = names
        return names

    def _surface_meshes(self, geometry) -> list:
        """trimesh meshes (or a point cloud) for a Rhino geometry; [] when it has none."""
        import rhino3dm

        if isinstance(geometry, rhino3dm.Mesh):
            found = [geometry]
        elif isinstance(geometry, rhino3dm.Brep):
            found = [face.GetMesh(rhino3dm.MeshType.Any) for face in geometry.Faces]
            found = [mesh for mesh in found if mesh is not None]
            if not found:
                self.without_mesh += 1
        elif isinstance(geometry, rhino3dm.Extrusion):
            found = [geometry.GetMesh(rhino3dm.MeshType.Any)]
            if found[0] is None:
                self.without_mesh += 1
                found = []
        elif isinstance(geometry, rhino3dm.SubD):
            refined = geometry.Duplicate()
            refined.Subdivide(self.subd_level)
            net = rhino3dm.Mesh.CreateFromSubDControlNet(refined, False)
            found = []
            if net is not None:
                # the net has four corners per quad; welded it is smooth and 4x lighter
                net.Vertices.CombineIdentical(True, True)
                found = [net]
        elif isinstance(geometry, rhino3dm.Surface):
            self.without_mesh += 1
            found = []
        elif isinstance(geometry, rhino3dm.PointCloud):
            return [_point_cloud(geometry)] if geometry.Count else []
        else:
            kind = type(geometry).__name__
            if isinstance(geometry, rhino3dm.Curve):
                self.no_surface["curve"] += 1
            elif kind.startswith("Dim"):
                self.no_surface["annotation"] += 1
            else:
                self.no_surface[_NO_SURFACE.get(kind, kind)] += 1
            found = []
        if len(found) > 1:
            # a B-rep's faces are meshed one by one: one mesh per object
            joined = rhino3dm.Mesh()
            for mesh in found:
                joined.Append(mesh)
            found = [joined]
        meshes = [_trimesh(mesh) for mesh in found]
        return [mesh for mesh in meshes if len(mesh.faces)]

    # -- materials -------------------------------------------------------------------

    def _look(self, attributes, inherited: _Look | None) -> _Look:
        """Rhino's rules: a material from the object, its layer or its block instance;
        a display colour from the object, its layer, its material or its instance."""
        import rhino3dm

        layer = (
            self.layers[attributes.LayerIndex]
            if 0 <= attributes.LayerIndex < len(self.layers)
            else None
        )
        source = attributes.MaterialSource
        if source == rhino3dm.ObjectMaterialSource.MaterialFromObject:
            material = attributes.MaterialIndex
        elif source == rhino3dm.ObjectMaterialSource.MaterialFromParent and inherited:
            material = inherited.material
        else:
            material = layer.RenderMaterialIndex if layer is not None else -1
        colour_source = attributes.ColorSource
        if colour_source == rhino3dm.ObjectColorSource.ColorFromObject:
            colour = tuple(attributes.ObjectColor)
        elif colour_source == rhino3dm.ObjectColorSource.ColorFromParent and inherited:
            colour = inherited.colour
        elif colour_source == rhino3dm.ObjectColorSource.ColorFromMaterial and 0 <= material < len(
            self.model.Materials
        ):
            colour = tuple(self.model.Materials[material].DiffuseColor)
        else:
            colour = tuple(layer.Color) if layer is not None else (204, 204, 204, 255)
        if not 0 <= material < len(self.model.Materials):
            material = -1
        return _Look(material, tuple(int(channel) for channel in colour))

    def _material(self, look: _Look) -> trimesh.visual.material.PBRMaterial:
        """The PBR material of a look (with its bitmap as base colour texture), made once."""
        key = (look.material, look.colour) if look.material < 0 else (look.material,)
        if key in self.materials:
            return self.materials[key]
        image = None
        if look.material < 0:
            rgba = list(look.colour[:3]) + [255]
            name = "color_" + "".join(f"{channel:02x}" for channel in rgba[:3])
        else:
            source = self.model.Materials[look.material]
            alpha = round(255 * (1.0 - min(max(float(source.Transparency), 0.0), 1.0)))
            rgba = list(tuple(source.DiffuseColor)[:3]) + [alpha]
            name = source.Name or f"material_{look.material}"
            image = self._texture(source, name)
        material = trimesh.visual.material.PBRMaterial(
            name=name,
            baseColorFactor=rgba if image is None else [255, 255, 255, rgba[3]],
            baseColorTexture=image,
            metallicFactor=0.0,
            roughnessFactor=0.6,
            alphaMode="BLEND" if rgba[3] < 255 else None,
            doubleSided=False,
        )
        self.materials[key] = material
        return material

    def _texture(self, source, name: str):
        texture = source.GetBitmapTexture()
        if texture is None or not texture.FileName:
            return None
        found = find_file(self.path.parent, texture.FileName)
        if found is None:
            if texture.FileName not in self._missing_textures:
                self._missing_textures.add(texture.FileName)
                self.warnings.append(
                    f"texture '{Path(texture.FileName.replace(chr(92), '/')).name}' of material "
                    f"'{name}' is not next to the file; its colour is used"
                )
            return None
        from PIL import Image

        with Image.open(found) as image:
            return image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image.copy()

    def _visual(self, mesh: trimesh.Trimesh, material):
        uv = mesh.metadata.pop("rhino_uv", None)
        if material.baseColorTexture is None or uv is None:
            uv = None
        return trimesh.visual.TextureVisuals(uv=uv, material=material)


def _trimesh(mesh) -> trimesh.Trimesh:
    """A rhino3dm mesh as a trimesh, quads split in two; normals and UVs kept."""
    # rhino3dm hands out one object per vertex; its arrays are the quickest way through
    points = mesh.Vertices.ToPoint3dArray()
    vertices = np.array([(p.X, p.Y, p.Z) for p in points], dtype=np.float64)
    faces = np.array([tuple(face) for face in mesh.Faces], dtype=np.int64)
    faces = faces.reshape(-1, 4)
    quads = faces[:, 2] != faces[:, 3]
    triangles = np.concatenate([faces[:, :3], faces[quads][:, [0, 2, 3]]])
    normals = None
    if len(mesh.Normals) == len(vertices):
        normals = np.array([(n.X, n.Y, n.Z) for n in mesh.Normals], dtype=np.float64)
    result = trimesh.Trimesh(
        vertices=vertices.reshape(-1, 3),
        faces=triangles.reshape(-1, 3),
        vertex_normals=normals,
        process=False,
    )
    if len(mesh.TextureCoordinates) == len(vertices) and len(vertices):
        result.metadata["rhino_uv"] = np.array(
            [(t.X, t.Y) for t in mesh.TextureCoordinates], dtype=np.float64
        )
    return result


def _point_cloud(cloud) -> trimesh.PointCloud:
    points = np.array([(p.X, p.Y, p.Z) for p in cloud.GetPoints()], dtype=np.float64)
    colours = None
    if cloud.ContainsColors:
        colours = np.array([tuple(c) for c in cloud.GetColors()], dtype=np.uint8)
    return trimesh.PointCloud(points.reshape(-1, 3), colors=colours)


READERS = {"3dm": read_3dm}
WRITERS: dict = {}
