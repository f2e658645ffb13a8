"""3MF in and out (the 3D-printing package): named objects placed by build items.

The reader parses the package itself (zipfile + lxml): trimesh 5.2 reads only
the root model part, so a Production-extension package, whose build items and
components name objects in other model parts (``p:path="/3D/Objects/gear_1.model"``,
each part with its own object ids), loaded as nothing. Here every part is read, object
ids are scoped by part, and the scene keeps the file's structure: one node per build
item, a child node per component, one mesh per object however often it is placed.
Base-material and colour-group colours become a material colour (one per object) or
face colours; texture coordinates, composite materials and multi-properties are
dropped with a warning. The model's ``unit`` becomes `Scene.unit`, and ``up_axis`` is
``"z"``, as the 3MF spec says.

Only parts inside the package are read, each with a cap on its unpacked size,
so a zip bomb or a ``p:path`` of ``../../etc/passwd`` fails with a reason. The writer
is trimesh's: meshes with their names and transforms.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from lxml import etree

from tasks.steps.io.common import read_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

UNITS = {
    "micron": 1e-6,
    "millimeter": 0.001,
    "centimeter": 0.01,
    "inch": 0.0254,
    "foot": 0.3048,
    "meter": 1.0,
}
"""Metres per unit for each value of the model's ``unit`` attribute (the 3MF core spec)."""

DEFAULT_UNIT = "millimeter"
"""The unit of a model without a ``unit`` attribute, per the spec."""

MAX_MODEL_BYTES = 1 << 30
"""Unpacked bytes of model XML read from one package, over all its parts (1 GiB: a
10-million-triangle model is about 750 MB); more is refused as a probable zip bomb."""

MAX_DEPTH = 64
"""Deepest nesting of components followed before the file is refused."""

MAX_INSTANCES = 1_000_000
"""Most nodes a package may place (components of components multiply)."""

_MODEL_RELATIONSHIP = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
_VERTICES = "{*}vertices/{*}vertex"
_XML_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False}


class _Refused(Exception):
    """A reason to refuse the whole file, turned into a ReadError by `read_3mf`."""


@dataclass
class _Object:
    """One `<object>` of one model part."""

    name: str
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    colours: np.ndarray | None = None  # (faces, 4) uint8, or None for no colour
    colour_name: str = ""  # the base material's name when the whole object has one
    components: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    """(part, object id, 4x4 transform) for each `<component>`."""


@dataclass
class _Part:
    """What one model part defines: its objects by id, and (in the root part) the build."""

    objects: dict[str, _Object] = field(default_factory=dict)
    build: list[tuple[str, str, np.ndarray, str | None]] = field(default_factory=list)
    """(part, object id, 4x4 transform, partnumber) for each build `<item>`."""
    unit: str | None = None
    warnings: list[str] = field(default_factory=list)


def read_3mf(path: Path, options: LoadOptions) -> Scene:
    """Read a .3mf package, every model part of it, into a Scene: a node per build item
    and component, one mesh per object (placed as often as the file places it)."""
    try:
        with zipfile.ZipFile(path) as package:
            return _Package(package).scene()
    except _Refused as exc:
        raise read_error(path, "3mf", str(exc)) from exc
    except zipfile.BadZipFile as exc:
        raise read_error(path, "3mf", f"not a 3MF package (not a ZIP archive: {exc})") from exc
    except etree.XMLSyntaxError as exc:
        raise read_error(path, "3mf", f"malformed model XML: {exc}") from exc


def write_3mf(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write the scene's meshes and transforms as a .3mf package."""
    from trimesh.exchange.threemf import export_3MF

    path.write_bytes(export_3MF(_distinct_names(scene.trimesh_scene)))
    return [path]


def _distinct_names(trimesh_scene):
    """The scene with no mesh named like a node: trimesh 5.2 gives a node and a mesh of
    the same name one object id, and writes a package whose object contains itself."""
    clashing = set(trimesh_scene.geometry) & set(trimesh_scene.graph.nodes)
    if not clashing:
        return trimesh_scene
    copied = trimesh_scene.copy()
    taken = set(copied.geometry) | set(copied.graph.nodes)
    renamed = {}
    for name in clashing:
        new = f"{name}_mesh"
        while new in taken:
            new += "_"
        taken.add(new)
        renamed[name] = new
        copied.geometry[new] = copied.geometry.pop(name)
    edges = copied.graph.transforms
    for data in edges.edge_data.values():
        if data.get("geometry") in renamed:
            data["geometry"] = renamed[data["geometry"]]
    for data in edges.node_data.values():
        if data.get("geometry") in renamed:
            data["geometry"] = renamed[data["geometry"]]
    edges._hash = None
    copied.graph._cache.clear()
    copied._cache.clear()
    return copied


class _Package:
    """The parts of one open 3MF package, read on demand, and the scene built from them."""

    def __init__(self, package: zipfile.ZipFile) -> None:
        self.package = package
        # OPC part names are case-insensitive; zip member names are what the package holds
        self.members = {info.filename.lower(): info for info in package.infolist()}
        self.parts: dict[str, _Part | None] = {}
        self.budget = MAX_MODEL_BYTES
        self.warnings: list[str] = []
        self.scene_graph = trimesh.Scene(base_frame="world")
        self.geometry_names: dict[tuple[str, str], str] = {}
        self.node_names: set[str] = set()
        self.instances = 0

    def scene(self) -> Scene:
        # 1. the root model part, named by the package relationships
        root_name = self._root_part_name()
        root = self._part(root_name)
        if root is None:
            raise _Refused(f"the package has no model part '{root_name}'")
        # 2. the unit, as declared
        unit = root.unit or DEFAULT_UNIT
        if unit not in UNITS:
            self.warnings.append(f"unknown unit '{unit}'; read as millimetres")
            unit = DEFAULT_UNIT
        # 3. place every build item, and the components below it
        for number, (part, object_id, transform, partnumber) in enumerate(root.build, 1):
            where = f"build item {number}"
            found = self._object(part, object_id, where)
            if found is not None:
                self._place("world", part, object_id, found, transform, partnumber, ())
        if not self.scene_graph.geometry and self.warnings:
            # the file has content, just none that becomes triangles: say which
            raise _Refused("nothing to show: " + "; ".join(self.warnings[:3]))
        scene = Scene(
            trimesh_scene=self.scene_graph, unit=UNITS[unit], up_axis="z", warnings=self.warnings
        )
        self.scene_graph.metadata["units"] = unit
        return scene

    # -- the package's parts

    def _root_part_name(self) -> str:
        rels = self._read("_rels/.rels", required=False)
        if rels is not None:
            for relationship in etree.fromstring(rels, etree.XMLParser(**_XML_OPTIONS)):
                target = relationship.get("Target")
                if relationship.get("Type") == _MODEL_RELATIONSHIP and target:
                    name = _part_name(target, "")
                    if name is None:
                        raise _Refused(f"the model part '{target[:80]}' is outside the package")
                    return name
        return "3D/3dmodel.model"

    def _read(self, name: str, required: bool = True) -> bytes | None:
        info = self.members.get(name.lower())
        if info is None:
            if required:
                raise _Refused(f"the package has no part '{name}'")
            return None
        # the size in the zip directory may lie: stop reading at the budget instead
        with self.package.open(info) as stream:
            data = stream.read(self.budget + 1)
        if len(data) > self.budget:
            raise _Refused(
                f"the model parts unpack to more than {MAX_MODEL_BYTES >> 20:,} MiB "
                "(refused as a probable zip bomb)"
            )
        self.budget -= len(data)
        return data

    def _part(self, name: str) -> _Part | None:
        if name not in self.parts:
            data = self._read(name, required=False)
            self.parts[name] = None if data is None else _parse_part(data, name)
            if data is not None:
                self.warnings.extend(self.parts[name].warnings)
        return self.parts[name]

    def _object(self, part_name: str, object_id: str, where: str) -> _Object | None:
        part = self._part(part_name)
        if part is None:
            self.warnings.append(
                f"{where} refers to part '/{part_name}', which is not in the package; skipped"
            )
            return None
        found = part.objects.get(object_id)
        if found is None:
            self.warnings.append(
                f"{where} refers to object {object_id}, which '/{part_name}' does not define; "
                "skipped"
            )
        return found

    # -- the scene

    def _place(self, parent, part, object_id, placed, transform, name, stack) -> None:
        key = (part, object_id)
        if key in stack:
            raise _Refused(f"object {object_id} of '/{part}' contains itself through components")
        if len(stack) >= MAX_DEPTH:
            raise _Refused(f"components nest deeper than {MAX_DEPTH} levels")
        self.instances += 1
        if self.instances > MAX_INSTANCES:
            raise _Refused(f"the build places more than {MAX_INSTANCES:,} objects")
        node = _unique(name or placed.name, self.node_names)
        geometry = self._geometry(key, placed)
        extra = {} if geometry is None else {"geometry": geometry}
        self.scene_graph.graph.update(frame_from=parent, frame_to=node, matrix=transform, **extra)
        for number, (child_part, child_id, child_transform) in enumerate(placed.components, 1):
            child_where = f"component {number} of object {object_id} ('{placed.name}')"
            child = self._object(child_part, child_id, child_where)
            if child is not None:
                self._place(node, child_part, child_id, child, child_transform, None, (*stack, key))

    def _geometry(self, key: tuple[str, str], placed: _Object) -> str | None:
        """The scene's name for an object's mesh (added on first use), None if it has none."""
        if placed.faces is None or not len(placed.faces):
            return None
        if key not in self.geometry_names:
            name = _unique(placed.name, set(self.scene_graph.geometry))
            # not add_geometry: that would also place the mesh once at the origin
            self.scene_graph.geometry[name] = _mesh(placed)
            self.geometry_names[key] = name
        return self.geometry_names[key]


def _mesh(placed: _Object) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(placed.vertices, placed.faces, process=False)
    colours = placed.colours
    if colours is not None:
        if (colours == colours[0]).all():
            material = trimesh.visual.material.PBRMaterial(
                name=placed.colour_name or None, baseColorFactor=colours[0]
            )
            mesh.visual = trimesh.visual.TextureVisuals(material=material)
        else:
            mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=colours)
    return mesh


def _parse_part(data: bytes, name: str) -> _Part:
    """Objects (meshes, components, colours) and build items of one model part."""
    part = _Part()
    folder = posixpath.dirname(name)
    properties: dict[str, tuple[str, list[str], list[np.ndarray | None]]] = {}
    try:
        root = etree.fromstring(data, etree.XMLParser(huge_tree=True, **_XML_OPTIONS))
    except etree.XMLSyntaxError as exc:
        # exporters (the 3MF Consortium's own multiprop samples) use namespace prefixes they
        # never declare; libxml2 can still build the tree, so read it and say so
        if not exc.error_log or any(e.domain_name != "NAMESPACE" for e in exc.error_log):
            raise
        parser = etree.XMLParser(huge_tree=True, recover=True, **_XML_OPTIONS)
        root = etree.fromstring(data, parser)
        part.warnings.append(f"'/{name}': {exc.error_log[0].message}; read anyway")
    part.unit = root.get("unit")
    for element in root.iterfind("{*}resources/*"):
        tag = etree.QName(element).localname
        if tag in ("basematerials", "colorgroup"):
            properties[element.get("id", "")] = _colour_group(element, tag)
        elif tag == "object":
            object_id = element.get("id", "")
            part.objects[object_id] = _parse_object(
                element, name, folder, properties, part.warnings
            )
        elif tag in ("texture2dgroup", "compositematerials", "multiproperties"):
            properties[element.get("id", "")] = (tag, [], [])
    for number, item in enumerate(root.iterfind("{*}build/{*}item"), 1):
        where = f"build item {number} of '/{name}'"
        part.build.append(
            (
                _path_attribute(item, folder, where) or name,
                _required(item, "objectid", where),
                _transform(item, where),
                item.get("partnumber") or None,
            )
        )
    return part


def _parse_object(element, part_name, folder, properties, warnings) -> _Object:
    object_id = element.get("id", "")
    placed = _Object(name=element.get("name") or f"object {object_id}")
    where = f"object {object_id} ('{placed.name}') of '/{part_name}'"
    mesh = element.find("{*}mesh")
    if mesh is not None:
        placed.vertices, placed.faces, triangles = _parse_mesh(mesh, where, warnings)
        placed.colours, placed.colour_name = _face_colours(
            element, triangles, properties, where, warnings
        )
        beams = len(mesh.findall("{*}beamlattice/{*}beams/{*}beam"))
        if beams:
            warnings.append(f"{where}: its beam lattice ({beams:,} beams) was not read")
    if any(etree.QName(key).localname == "slicestackid" for key in element.attrib):
        warnings.append(f"{where}: its slice stack was not read; its mesh is shown instead")
    for number, component in enumerate(element.iterfind("{*}components/{*}component"), 1):
        component_where = f"component {number} of {where}"
        component_part = _path_attribute(component, folder, component_where) or part_name
        placed.components.append(
            (
                component_part,
                _required(component, "objectid", component_where),
                _transform(component, component_where),
            )
        )
    return placed


def _parse_mesh(mesh, where: str, warnings: list[str]):
    """(vertices, faces, the kept `<triangle>` elements) of a `<mesh>`; triangles naming a
    vertex the mesh does not have are dropped with a warning."""
    try:
        vertices = np.array(
            [(v.attrib["x"], v.attrib["y"], v.attrib["z"]) for v in mesh.iterfind(_VERTICES)],
            dtype=np.float64,
        ).reshape(-1, 3)
        triangles = mesh.findall("{*}triangles/{*}triangle")
        faces = np.array(
            [(t.attrib["v1"], t.attrib["v2"], t.attrib["v3"]) for t in triangles], dtype=np.int64
        ).reshape(-1, 3)
    except KeyError as exc:
        raise _Refused(f"{where}: a vertex or triangle has no '{exc.args[0]}' attribute") from exc
    except (ValueError, OverflowError) as exc:
        raise _Refused(f"{where}: a vertex or triangle has a value that is not a number") from exc
    valid = ((faces >= 0) & (faces < len(vertices))).all(axis=1)
    if not valid.all():
        dropped = int((~valid).sum())
        warnings.append(
            f"{where}: ignored {dropped:,} of {len(faces):,} triangles whose vertex index is "
            f"out of range (the mesh has {len(vertices):,} vertices)"
        )
        faces = faces[valid]
        triangles = [t for t, keep in zip(triangles, valid, strict=True) if keep]
    return vertices, faces, triangles


def _colour_group(element, tag: str) -> tuple[str, list[str], list[np.ndarray | None]]:
    """(kind, names, RGBA colours) of a `<basematerials>` or `<m:colorgroup>`."""
    attribute = "displaycolor" if tag == "basematerials" else "color"
    entries = [child for child in element if isinstance(child.tag, str)]
    return (
        tag,
        [entry.get("name", "") for entry in entries],
        [_rgba(entry.get(attribute, "")) for entry in entries],
    )


def _face_colours(element, triangles, properties, where: str, warnings: list[str]):
    """(faces x 4 uint8 colours or None, the material name if one colour covers all)."""
    default_group, default_index = element.get("pid"), element.get("pindex")
    if default_group is None and not any(t.get("pid") is not None for t in triangles):
        return None, ""
    colours = np.zeros((len(triangles), 4), dtype=np.uint8)
    coloured = np.zeros(len(triangles), dtype=bool)
    names = set()
    skipped: dict[str, int] = {}
    corners = 0
    for number, triangle in enumerate(triangles):
        group_id = triangle.get("pid", default_group)
        index = triangle.get("p1", default_index if triangle.get("pid") is None else None)
        group = properties.get(group_id)
        if group is None or index is None:
            reason = "name no colour group the part defines" if group is None else "have no p1"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        kind, group_names, group_colours = group
        if kind not in ("basematerials", "colorgroup"):
            skipped[f"use a {kind} (not read)"] = skipped.get(f"use a {kind} (not read)", 0) + 1
            continue
        if not index.isdigit() or int(index) >= len(group_colours):
            reason = f"name a colour index beyond their group's {len(group_colours)}"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        colour = group_colours[int(index)]
        if colour is None:
            skipped["name a colour that is not #RRGGBB"] = (
                skipped.get("name a colour that is not #RRGGBB", 0) + 1
            )
            continue
        colours[number], coloured[number] = colour, True
        names.add(group_names[int(index)] if kind == "basematerials" else "")
        if triangle.get("p2", index) != index or triangle.get("p3", index) != index:
            corners += 1
    for reason, count in skipped.items():
        warnings.append(f"{where}: the colour of {count:,} triangles was ignored: they {reason}")
    if corners:
        warnings.append(
            f"{where}: {corners:,} triangles have a colour per corner; each was given its "
            "first corner's colour"
        )
    if not coloured.any():
        return None, ""
    colours[~coloured] = (204, 204, 204, 255)  # the grey of an uncoloured mesh
    name = next(iter(names)) if len(names) == 1 and coloured.all() else ""
    return colours, name


def _rgba(text: str) -> np.ndarray | None:
    text = text.strip()
    digits = text[1:]
    if not text.startswith("#") or len(digits) not in (6, 8):
        return None
    try:
        values = bytes.fromhex(digits)
    except ValueError:
        return None
    return np.frombuffer(values.ljust(4, b"\xff"), dtype=np.uint8).copy()


def _transform(element, where: str) -> np.ndarray:
    """The 4x4 matrix of a ``transform="m00 m01 m02 m10 ... m32"`` attribute (row vectors:
    the last three numbers are the translation)."""
    matrix = np.eye(4)
    text = element.get("transform")
    if text is None:
        return matrix
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        values = np.empty(0)
    if values.shape != (12,) or not np.isfinite(values).all():
        raise _Refused(f"{where}: transform is not 12 numbers: '{text[:80]}'")
    matrix[:3, :4] = values.reshape(4, 3).T
    return matrix


def _required(element, attribute: str, where: str) -> str:
    value = element.get(attribute)
    if value is None:
        raise _Refused(f"{where} has no '{attribute}' attribute")
    return value


def _path_attribute(element, folder: str, where: str) -> str | None:
    """The part a Production-extension ``p:path`` names, or None when there is none."""
    target = next(
        (value for key, value in element.attrib.items() if etree.QName(key).localname == "path"),
        None,
    )
    if target is None:
        return None
    name = _part_name(target, folder)
    if name is None:
        raise _Refused(f"{where}: path '{target[:80]}' points outside the package")
    return name


def _part_name(target: str, folder: str) -> str | None:
    """The package-relative name of a part reference, absolute (``/3D/x.model``) or relative
    to `folder`; None when it climbs out of the package."""
    target = target.strip().replace("\\", "/")
    joined = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
    name = posixpath.normpath(joined) if joined else ""
    if not name or name == "." or name.startswith("../") or name == "..":
        return None
    return name


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 1
    while candidate in used:
        candidate = f"{name}_{number}"
        number += 1
    used.add(candidate)
    return candidate


READERS = {"3mf": read_3mf}
WRITERS = {"3mf": write_3mf}
