"""IFC in (IFC2x3, IFC4, IFC4x3) through IfcOpenShell: the spatial tree, element names,
surface-style colours, shared representations, the project's length unit.

The scene's tree is the file's: project -> site -> building -> storey -> element, with
an element's parts (a window's frame members, an assembly's beams) below it. Nodes are
named after the entity's ``Name``, or its class and GlobalId when it has none
(``Member (0Pu4Y2_jz8nwxg8ov$gGjK)``), made unique with ``_1``, ``_2``. Geometry comes
from IfcOpenShell's iterator (on several threads for big models) in the project's length
unit, each element in its own placement; elements whose body is one representation (IFC mapped
items, types) share one mesh however often they are placed. An element with several
surface styles gets one mesh per style below its node, as `tasks.steps.io.cad` does for
face colours. Opening elements (the voids cut from walls) and spaces (room volumes) are
left out, as IfcOpenShell's own IfcConvert does.

Property counts go into ``scene.facts``:

- ``metadata_component_count``: objects (products and the project) with at least one
  property in a property set or element quantity set
- ``metadata_property_count``: those properties and quantities, in total
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene
from tasks.steps.tessellate import PRESETS

logger = logging.getLogger(__name__)

SKIPPED_CLASSES = ("IfcOpeningElement", "IfcSpace")
"""Products whose geometry is not read: voids and room volumes, which hide what they cut
or enclose."""

MAX_THREADS = 8
"""Most threads IfcOpenShell's iterator uses, and only for big models on a machine with
four cores or more (half of them are used). Measured on a 2-core worker (IfcOpenShell
0.9, 614 elements): two threads took 1.4-2.3x the wall time of one and 1.65x the CPU
time, so smaller models and machines are read on one thread."""

THREADED_ABOVE = 2000
"""Products a model needs before its geometry is built on several threads."""

_MAX_DEPTH = 64  # deeper decomposition means a cyclic or corrupt file


def read_ifc(path: Path, options: LoadOptions) -> Scene:
    """Read an IFC file: its spatial tree, named elements, colours and shared geometry."""
    import ifcopenshell
    import ifcopenshell.util.unit

    # 1. parse the STEP physical file
    try:
        model = ifcopenshell.open(str(path))
    except Exception as exc:  # IfcOpenShell raises its own error types, or RuntimeError
        raise read_error(path, "ifc", f"not an IFC file IfcOpenShell can parse ({exc})") from exc
    unit = float(ifcopenshell.util.unit.calculate_unit_scale(model))
    # 2. build every element's body, in the project's unit
    shapes, bodies, failed = _tessellate(model, options)
    # 3. the spatial tree, with each element's meshes at its placement
    builder = _SceneBuilder(model, bodies)
    builder.add_spatial_structure()
    for shape in shapes:
        builder.place(shape)
    warnings = []
    if failed:
        warnings.append(
            "IfcOpenShell could not build the geometry of some elements; they were left out"
        )
    facts = _property_facts(model) if options.read_metadata else {}
    logger.debug(
        "IFC %s (%s): %d elements, %d meshes, %d materials, unit %g m, facts %s",
        path.name,
        model.schema,
        len(shapes),
        len(builder.scene.geometry),
        len(builder.materials),
        unit,
        facts,
    )
    return Scene(
        trimesh_scene=builder.scene,
        facts={key: value for key, value in facts.items() if value},
        warnings=warnings,
        unit=unit,
        up_axis="z",
    )


# -- geometry ----------------------------------------------------------------------------


@dataclass
class _Shape:
    """One element placed: which body, where (in the project's unit)."""

    product_id: int
    body: tuple
    """Key into the bodies: equal for elements sharing a representation and its styles."""
    matrix: np.ndarray


@dataclass
class _Body:
    """Triangles as IfcOpenShell built them, copied out of the iterator once per key."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    material_ids: np.ndarray
    materials: list[tuple[str, tuple[float, float, float, float]]]
    """(name, RGBA in 0..1) per material id."""


def _tessellate(model, options: LoadOptions) -> tuple[list[_Shape], dict[tuple, _Body], bool]:
    """(every element placed, sorted by entity id; the bodies they place; whether some
    elements failed to build)."""
    import ifcopenshell.geom

    settings = ifcopenshell.geom.settings()
    # the project's own unit, so that the source unit is reported and kept by unitless
    # writers; io.load scales to metres
    settings.set("convert-back-units", True)
    # unwelded vertices come with normals: flat faces stay flat-shaded
    settings.set("weld-vertices", False)
    preset = PRESETS.get(options.tessellation.preset, PRESETS["medium"])
    angle = min(options.tessellation.max_angle or preset.max_angle, 60.0)
    settings.set("mesher-angular-deflection", math.radians(angle * options.tessellation.coarsen))
    iterator = ifcopenshell.geom.iterator(
        settings, model, _threads(len(model.by_type("IfcProduct"))), exclude=list(SKIPPED_CLASSES)
    )
    shapes: list[_Shape] = []
    bodies: dict[tuple, _Body] = {}
    if iterator.initialize():
        while True:
            shapes.append(_copy(iterator.get(), model, bodies))
            if not iterator.next():
                break
    # threads hand elements back in any order; names made unique must not depend on it
    shapes.sort(key=lambda shape: shape.product_id)
    return shapes, bodies, bool(iterator.had_error_processing_elements())


def _threads(products: int) -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    if products < THREADED_ABOVE or available < 4:
        return 1
    return max(1, min(available // 2, MAX_THREADS))


def _copy(shape, model, bodies: dict[tuple, _Body]) -> _Shape:
    """The element's placement; its triangles go into `bodies` unless an element already
    read shares them (a mapped representation placed 1000 times is copied once)."""
    geometry = shape.geometry
    materials = [_material(material, model) for material in geometry.materials]
    key = (geometry.id, tuple(materials))
    if key not in bodies:
        vertices = np.asarray(geometry.verts, dtype=np.float64).reshape(-1, 3)
        normals = np.asarray(geometry.normals, dtype=np.float64).reshape(-1, 3)
        bodies[key] = _Body(
            vertices=vertices,
            faces=np.asarray(geometry.faces, dtype=np.int64).reshape(-1, 3),
            normals=normals if len(normals) == len(vertices) else None,
            material_ids=np.asarray(geometry.material_ids, dtype=np.int64),
            materials=materials,
        )
    matrix = np.frombuffer(shape.transformation_buffer, "d").reshape((4, 4), order="F")
    return _Shape(shape.id, key, matrix.copy())


def _material(material, model) -> tuple[str, tuple[float, float, float, float]]:
    """(name, RGBA) of an IfcOpenShell style: its IfcSurfaceStyle's name, else a name from
    the colour; IfcOpenShell's default for an unstyled element is named after its class."""
    red, green, blue = (float(channel) for channel in material.diffuse.components)
    transparency = float(material.transparency)
    alpha = 1.0 if math.isnan(transparency) else 1.0 - min(max(transparency, 0.0), 1.0)
    rgba = tuple(round(channel, 4) for channel in (red, green, blue, alpha))
    # `material.instance` crashes on a default material; its id is 0 there
    style = model.by_id(material.instance_id()) if material.instance_id() > 0 else None
    name = getattr(style, "Name", None) if style is not None else material.name
    if not name or name.startswith("IfcSurfaceStyle"):
        name = "color_" + "".join(f"{round(channel * 255):02x}" for channel in rgba[:3])
    return name, rgba


# -- the spatial tree --------------------------------------------------------------------


class _SceneBuilder:
    """IFC entities into trimesh nodes: one per object, meshes shared between placements."""

    def __init__(self, model, bodies: dict[tuple, _Body]):
        self.model = model
        self.bodies = bodies
        self.scene = trimesh.Scene()
        self.nodes: dict[int, tuple[str, str, np.ndarray, np.ndarray]] = {}
        """entity id -> (node, parent node, local matrix, world matrix)."""
        self.meshes: dict[tuple, list[str]] = {}
        self.materials: dict[tuple, trimesh.visual.material.PBRMaterial] = {}

    def add_spatial_structure(self) -> None:
        """A node for every site, building, storey (and IFC4.3 facility), so that empty
        storeys are in the tree too."""
        for element in self.model.by_type("IfcSpatialStructureElement"):
            if not element.is_a("IfcSpace"):
                self._node_of(element, None, 0)

    def place(self, shape: _Shape) -> None:
        element = self.model.by_id(shape.product_id)
        meshes = self._meshes(shape, element)
        if not meshes:
            return
        node, parent, local, world = self._node_of(element, shape.matrix, 0)
        offset = np.linalg.inv(world) @ shape.matrix
        if len(meshes) == 1 and np.allclose(offset, np.eye(4), atol=1e-9):
            # the element's own node carries its mesh (re-adding the edge keeps its parent)
            self.scene.graph.update(
                frame_from=parent, frame_to=node, matrix=local, geometry=meshes[0]
            )
            return
        for mesh in meshes:
            self._add(f"{node}_{mesh}", node, offset, geometry=mesh)

    def _node_of(self, entity, matrix: np.ndarray | None, depth: int) -> tuple:
        """(node, parent node, local matrix, world matrix) of an entity, made with its
        parents' nodes the first time it is asked for."""
        if entity.id() in self.nodes:
            return self.nodes[entity.id()]
        if depth > _MAX_DEPTH:
            raise ValueError("the decomposition is deeper than 64 levels (a cyclic reference?)")
        parent = _parent(entity)
        parent_node, parent_world = self.scene.graph.base_frame, np.eye(4)
        if parent is not None:
            parent_node, _, _, parent_world = self._node_of(parent, None, depth + 1)
        world = _placement(entity) if matrix is None else matrix
        local = np.linalg.inv(parent_world) @ world
        node = self._add(_display_name(entity), parent_node, local)
        self.nodes[entity.id()] = (node, parent_node, local, world)
        return self.nodes[entity.id()]

    def _add(self, name: str, parent: str, matrix: np.ndarray, geometry: str | None = None) -> str:
        node = trimesh.util.unique_name(name, self.scene.graph.transforms.node_data)
        extra = {"geometry": geometry} if geometry else {}
        self.scene.graph.update(frame_from=parent, frame_to=node, matrix=matrix, **extra)
        return node

    def _meshes(self, shape: _Shape, element) -> list[str]:
        """Geometry names for a body, built once per shared representation and named
        after the first element (by entity id) that places it."""
        if shape.body in self.meshes:
            return self.meshes[shape.body]
        body = self.bodies[shape.body]
        names = []
        base = element.Name or element.is_a()[3:]
        for material_id in np.unique(body.material_ids) if len(body.faces) else []:
            faces = body.faces[body.material_ids == material_id]
            if 0 <= material_id < len(body.materials):
                material = body.materials[material_id]
            else:
                material = ("default", (0.8, 0.8, 0.8, 1.0))
            name = trimesh.util.unique_name(base, self.scene.geometry)
            # stored without a node: each placement adds its own (add_geometry would add one)
            self.scene.geometry[name] = _mesh(body, faces, self._material(material))
            names.append(name)
        self.meshes[shape.body] = names
        return names

    def _material(self, material: tuple) -> trimesh.visual.material.PBRMaterial:
        if material not in self.materials:
            name, rgba = material
            self.materials[material] = trimesh.visual.material.PBRMaterial(
                name=name,
                baseColorFactor=[round(channel * 255) for channel in rgba],
                metallicFactor=0.0,
                roughnessFactor=0.8,
                alphaMode="BLEND" if rgba[3] < 1.0 else None,
                doubleSided=False,
            )
        return self.materials[material]


def _mesh(body: _Body, faces: np.ndarray, material) -> trimesh.Trimesh:
    """The triangles of one style, with only the vertices they use."""
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return trimesh.Trimesh(
        vertices=body.vertices[used],
        faces=inverse.reshape(-1, 3),
        vertex_normals=body.normals[used] if body.normals is not None else None,
        visual=trimesh.visual.TextureVisuals(material=material),
        process=False,
    )


def _parent(entity):
    """What an entity belongs to: the whole it is a part of, else its spatial container,
    else what it is nested in; None for the project."""
    import ifcopenshell.util.element as element

    return (
        element.get_aggregate(entity)
        or element.get_container(entity)
        or _nest(entity)
        or _filled(entity)
    )


def _nest(entity):
    for relation in getattr(entity, "Nests", None) or ():
        return relation.RelatingObject
    return None


def _filled(entity):
    """The wall (or slab) whose opening a door or window fills, when nothing contains it."""
    for fill in getattr(entity, "FillsVoids", None) or ():
        for void in getattr(fill.RelatingOpeningElement, "VoidsElements", None) or ():
            return void.RelatingBuildingElement
    return None


def _placement(entity) -> np.ndarray:
    """An object's world placement in the project's unit (identity for the project)."""
    import ifcopenshell.util.placement

    placement = getattr(entity, "ObjectPlacement", None)
    if placement is None:
        return np.eye(4)
    return np.asarray(ifcopenshell.util.placement.get_local_placement(placement), dtype=float)


def _display_name(entity) -> str:
    """``Name``, or ``Wall (2O2Fr$t4X7Zf8NOew3FLOH)`` for an entity without one."""
    name = (getattr(entity, "Name", None) or "").strip()
    if name:
        return name
    kind = entity.is_a()[3:] if entity.is_a().startswith("Ifc") else entity.is_a()
    guid = getattr(entity, "GlobalId", None)
    return f"{kind} ({guid})" if guid else kind


# -- properties --------------------------------------------------------------------------


def _property_facts(model) -> dict[str, int]:
    """Objects carrying properties or quantities, and how many they carry in all."""
    per_object: dict[int, int] = {}
    for relation in model.by_type("IfcRelDefinesByProperties"):
        definition = relation.RelatingPropertyDefinition
        # IFC4 allows a set of property set definitions here
        for one in definition if isinstance(definition, tuple) else (definition,):
            if one.is_a("IfcPropertySet"):
                count = len(one.HasProperties or ())
            elif one.is_a("IfcElementQuantity"):
                count = len(one.Quantities or ())
            else:
                continue
            for related in relation.RelatedObjects:
                per_object[related.id()] = per_object.get(related.id(), 0) + count
    carrying = [count for count in per_object.values() if count]
    return {"metadata_component_count": len(carrying), "metadata_property_count": sum(carrying)}


READERS = {"ifc": read_ifc}
WRITERS: dict = {}
