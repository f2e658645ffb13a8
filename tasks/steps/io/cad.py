"""CAD in (STEP, IGES, BREP) through OpenCASCADE's XCAF: assembly tree, part names, colours,
placements, then tessellated (see `tasks.steps.tessellate`).

Every part is meshed once however often it is placed; each placement is a scene
node named after the part (``nut``, ``nut_1``, ...) carrying the shared mesh. Face
colours override part colours, which override instance and assembly colours, as
XCAF defines. B-rep, PMI and metadata counts go into ``scene.facts``:

- ``brep_body_count``: placed solids + shells outside solids + faces outside shells
- ``brep_boundary``: placed free edges (used by one face only; seams and degenerate
  edges excluded); 0 for closed solids
- ``annotation_count``: XCAF dimensions + geometric tolerances + datums (semantic PMI;
  OCCT 8 gives 53 + 22 + 87 = 162 for NIST CTC-02, each with its graphical presentation)
- ``annotation_group_count``: saved views (11 for NIST CTC-02)
- ``pmi_component_count``: distinct shapes that annotations refer to
- ``metadata_component_count`` / ``metadata_property_count``: shapes carrying user-defined
  attributes (STEP property definitions read by XCAF's meta mode) and their total

``LoadOptions.lod_tessellations`` meshes the same document again at each further
quality (after clearing OCCT's cached triangulations), giving ``scene.lods`` without
parsing the file twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene
from tasks.steps.tessellate import (
    bounding_diagonal,
    clear_meshes,
    location_matrix,
    tessellate_shape,
)

logger = logging.getLogger(__name__)

_DEFAULT_COLOUR = (0.8, 0.8, 0.8, 1.0)
_MAX_DEPTH = 64  # deeper nesting means a cyclic or corrupt assembly


def read_step(path: Path, options: LoadOptions) -> Scene:
    """Read a STEP (AP203/AP214/AP242) file with its assembly tree, names, colours and PMI."""
    return _read(path, options, "step")


def read_iges(path: Path, options: LoadOptions) -> Scene:
    """Read an IGES file (geometry and colours; IGES keeps few names)."""
    return _read(path, options, "iges")


def read_brep(path: Path, options: LoadOptions) -> Scene:
    """Read an OpenCASCADE .brep file (one shape, named after the file)."""
    return _read(path, options, "brep")


def _read(path: Path, options: LoadOptions, kind: str) -> Scene:
    extension = path.suffix.lstrip(".").lower() or kind
    # 1. parse into an XCAF document
    document = _new_document()
    if kind == "step":
        _transfer_step(path, extension, document, options)
    elif kind == "iges":
        _transfer_iges(path, extension, document)
    else:
        _transfer_brep(path, extension, document)
    # 2. walk the assembly tree, meshing each part once
    builder = _build(document, options, options.tessellation, path.stem)
    # 3. counts trimesh has no place for
    facts = {
        "brep_body_count": builder.body_count,
        "brep_boundary": builder.boundary_edges,
        **(_pmi_facts(document) if kind == "step" and options.read_pmi else {}),
        **(_metadata_facts(document) if options.read_metadata else {}),
    }
    logger.debug(
        "%s %s: %d parts, %d placements, %d materials, facts %s",
        kind.upper(),
        path.name,
        len(builder.parts),
        builder.placements,
        len(builder.materials),
        facts,
    )
    # 4. further levels of detail: the same tree meshed afresh, from the same document
    facts = {key: value for key, value in facts.items() if value}
    lods = []
    for tessellation in options.lod_tessellations:
        _clear_meshes(document)
        level = _build(document, options, tessellation, path.stem)
        lods.append(_scene(level, facts))
    # OCCT reads every file into its session unit, millimetres; CAD declares no up axis and
    # draws Z-up, so io.load turns Z up into +Y unless the caller says otherwise
    scene = _scene(builder, facts)
    scene.lods = lods
    return scene


def _build(document, options: LoadOptions, tessellation, root_name: str) -> _SceneBuilder:
    builder = _SceneBuilder(document, replace(options, tessellation=tessellation), root_name)
    builder.build()
    if builder.failed_parts:
        builder.warnings.append(
            f"skipped {builder.failed_parts} part(s) that produced no triangles when tessellated"
        )
    return builder


def _scene(builder: _SceneBuilder, facts: dict) -> Scene:
    return Scene(
        trimesh_scene=builder.scene, facts=dict(facts), warnings=builder.warnings, unit=0.001
    )


def _clear_meshes(document) -> None:
    """Drop the triangulations on every shape (OCCT would keep a finer one when asked for a
    coarser one)."""
    from OCP.OCP.collections import Sequence_TDF_Label
    from OCP.XCAFDoc import XCAFDoc_DocumentTool, XCAFDoc_ShapeTool

    free = Sequence_TDF_Label()
    XCAFDoc_DocumentTool.ShapeTool_s(document.Main()).GetFreeShapes(free)
    for label in free:
        clear_meshes(XCAFDoc_ShapeTool.GetShape_s(label))


# -- reading into XCAF -----------------------------------------------------------------


def _new_document():
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDocStd import TDocStd_Document
    from OCP.XCAFApp import XCAFApp_Application

    document = TDocStd_Document(TCollection_ExtendedString("XmlXCAF"))
    XCAFApp_Application.GetApplication_s().NewDocument(
        TCollection_ExtendedString("MDTV-XCAF"), document
    )
    return document


def _transfer_step(path: Path, extension: str, document, options: LoadOptions) -> None:
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPCAFControl import STEPCAFControl_Reader

    reader = STEPCAFControl_Reader()
    reader.SetColorMode(True)
    reader.SetNameMode(True)
    reader.SetLayerMode(True)
    reader.SetGDTMode(options.read_pmi)
    reader.SetViewMode(options.read_pmi)
    reader.SetMetaMode(options.read_metadata)
    status = reader.ReadFile(str(path))
    if status != IFSelect_RetDone:
        raise read_error(path, extension, f"the STEP parser rejected the file ({status.name})")
    if not reader.Transfer(document):
        raise read_error(path, extension, "no shape could be transferred from the file")


def _transfer_iges(path: Path, extension: str, document) -> None:
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.IGESCAFControl import IGESCAFControl_Reader

    reader = IGESCAFControl_Reader()
    reader.SetColorMode(True)
    reader.SetNameMode(True)
    reader.SetLayerMode(True)
    status = reader.ReadFile(str(path))
    if status != IFSelect_RetDone:
        raise read_error(path, extension, f"the IGES parser rejected the file ({status.name})")
    if not reader.Transfer(document):
        raise read_error(path, extension, "no shape could be transferred from the file")


def _transfer_brep(path: Path, extension: str, document) -> None:
    from OCP.BRep import BRep_Builder
    from OCP.BRepTools import BRepTools
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDataStd import TDataStd_Name
    from OCP.TopoDS import TopoDS_Shape
    from OCP.XCAFDoc import XCAFDoc_DocumentTool

    shape = TopoDS_Shape()
    if not BRepTools.Read_s(shape, str(path), BRep_Builder()) or shape.IsNull():
        raise read_error(path, extension, "not a readable OpenCASCADE BREP file")
    label = XCAFDoc_DocumentTool.ShapeTool_s(document.Main()).AddShape(shape, False)
    TDataStd_Name.Set_s(label, TCollection_ExtendedString(path.stem))


# -- the assembly tree -----------------------------------------------------------------


@dataclass
class _Part:
    """One distinct shape (a prototype) and what its placements share."""

    faces: list
    face_colours: dict[int, tuple]
    bodies: int
    boundary_edges: int
    meshes: dict[tuple, list[str]] = field(default_factory=dict)


class _SceneBuilder:
    """Walks XCAF labels into a trimesh.Scene: one node per placement, one mesh per part."""

    def __init__(self, document, options: LoadOptions, root_name: str):
        from OCP.XCAFDoc import XCAFDoc_DocumentTool

        self.shape_tool = XCAFDoc_DocumentTool.ShapeTool_s(document.Main())
        self.options = options
        self.scene = trimesh.Scene()
        self.root_name = root_name
        self.parts: dict[str, _Part] = {}
        self.materials: dict[tuple, trimesh.visual.material.PBRMaterial] = {}
        self.warnings: list[str] = []
        self.body_count = self.boundary_edges = self.placements = self.failed_parts = 0
        self.model_diagonal = 0.0

    def build(self) -> None:
        from OCP.OCP.collections import Sequence_TDF_Label

        free = Sequence_TDF_Label()
        self.shape_tool.GetFreeShapes(free)
        labels = list(free)
        self.model_diagonal = _model_diagonal(labels)
        for label in labels:
            self._add(label, self.scene.graph.base_frame, np.eye(4), None, 0)

    def _add(self, label, parent: str, matrix: np.ndarray, colour, depth: int) -> None:
        """Place a free shape: an assembly's node and its components, or a lone part."""
        from OCP.XCAFDoc import XCAFDoc_ShapeTool

        colour = _label_colour(label) or colour
        name = _label_name(label) or self.root_name
        if XCAFDoc_ShapeTool.IsAssembly_s(label):
            self._add_components(label, self._node(name, parent, matrix), colour, depth)
        else:
            self._place_part(label, name, parent, matrix, colour)

    def _add_components(self, assembly, node: str, colour, depth: int) -> None:
        from OCP.OCP.collections import Sequence_TDF_Label
        from OCP.TDF import TDF_Label
        from OCP.XCAFDoc import XCAFDoc_ShapeTool

        if depth > _MAX_DEPTH:
            raise ValueError("assembly nesting is deeper than 64 levels (cyclic reference?)")
        components = Sequence_TDF_Label()
        XCAFDoc_ShapeTool.GetComponents_s(assembly, components, False)
        for component in components:
            referred = TDF_Label()
            XCAFDoc_ShapeTool.GetReferredShape_s(component, referred)
            local = location_matrix(XCAFDoc_ShapeTool.GetLocation_s(component))
            name = _label_name(referred) or _label_name(component) or "part"
            # an instance's colour overrides its part's, which overrides the assembly's
            own = _label_colour(component) or _label_colour(referred) or colour
            if XCAFDoc_ShapeTool.IsAssembly_s(referred):
                self._add_components(referred, self._node(name, node, local), own, depth + 1)
            else:
                self._place_part(referred, name, node, local, own)

    def _node(self, name: str, parent: str, matrix: np.ndarray, geometry: str | None = None) -> str:
        node = trimesh.util.unique_name(name, self.scene.graph.transforms.node_data)
        extra = {"geometry": geometry} if geometry else {}
        self.scene.graph.update(frame_from=parent, frame_to=node, matrix=matrix, **extra)
        return node

    def _place_part(self, label, name: str, parent: str, matrix: np.ndarray, colour) -> None:
        part = self._part(label)
        if part is None:
            return
        self.placements += 1
        self.body_count += part.bodies
        self.boundary_edges += part.boundary_edges
        meshes = self._meshes(label, part, colour or _DEFAULT_COLOUR)
        if len(meshes) == 1:
            # one colour: the placement node carries the mesh itself
            self._node(name, parent, matrix, geometry=meshes[0])
            return
        node = self._node(name, parent, matrix)
        for mesh in meshes:
            self._node(f"{node}_{mesh}", node, np.eye(4), geometry=mesh)

    def _part(self, label) -> _Part | None:
        from OCP.XCAFDoc import XCAFDoc_ShapeTool

        key = _entry(label)
        if key in self.parts:
            return self.parts[key]
        shape = XCAFDoc_ShapeTool.GetShape_s(label)
        faces = tessellate_shape(shape, self.options.tessellation, self.model_diagonal)
        if not faces:
            self.failed_parts += 1
            self.parts[key] = None
            return None
        bodies, boundary = _topology_counts(shape)
        part = _Part(faces, _face_colours(label, shape), bodies, boundary)
        self.parts[key] = part
        return part

    def _meshes(self, label, part: _Part, colour) -> list[str]:
        """Geometry names for this part in this colour, built once per (part, colour)."""
        if colour in part.meshes:
            return part.meshes[colour]
        groups: dict[tuple, list] = {}
        for face in part.faces:
            groups.setdefault(part.face_colours.get(face.face_index, colour), []).append(face)
        base = _label_name(label) or "part"
        names = []
        for group_colour, faces in groups.items():
            name = trimesh.util.unique_name(base, self.scene.geometry)
            # stored without a node: each placement adds its own (add_geometry would add one)
            self.scene.geometry[name] = _mesh(faces, self._material(group_colour))
            names.append(name)
        part.meshes[colour] = names
        return names

    def _material(self, colour: tuple) -> trimesh.visual.material.PBRMaterial:
        if colour not in self.materials:
            rgb = "".join(f"{round(channel * 255):02x}" for channel in colour[:3])
            self.materials[colour] = trimesh.visual.material.PBRMaterial(
                name=f"color_{rgb}",
                baseColorFactor=[round(channel * 255) for channel in colour],
                metallicFactor=0.0,
                roughnessFactor=0.6,
                alphaMode="BLEND" if colour[3] < 1.0 else None,
                doubleSided=False,
            )
        return self.materials[colour]


def _mesh(faces: list, material) -> trimesh.Trimesh:
    offsets = np.cumsum([0] + [len(face.vertices) for face in faces[:-1]])
    vertices = np.concatenate([face.vertices for face in faces])
    triangles = np.concatenate(
        [face.triangles + offset for face, offset in zip(faces, offsets, strict=True)]
    )
    normals = None
    if all(face.normals is not None for face in faces):
        normals = np.concatenate([face.normals for face in faces])
    uvs = None
    if all(face.uvs is not None for face in faces):
        uvs = np.concatenate([face.uvs for face in faces])
    # process=False keeps each face's own vertices, so edges between faces stay sharp
    return trimesh.Trimesh(
        vertices=vertices,
        faces=triangles,
        vertex_normals=normals,
        visual=trimesh.visual.TextureVisuals(uv=uvs, material=material),
        process=False,
    )


# -- XCAF attribute helpers ------------------------------------------------------------


def _entry(label) -> str:
    from OCP.TCollection import TCollection_AsciiString
    from OCP.TDF import TDF_Tool

    entry = TCollection_AsciiString()
    TDF_Tool.Entry_s(label, entry)
    return entry.ToCString()


def _label_name(label) -> str | None:
    from OCP.TDataStd import TDataStd_Name

    attribute = TDataStd_Name()
    if label.FindAttribute(TDataStd_Name.GetID_s(), attribute):
        name = attribute.Get().ToExtString().strip()
        # XCAF names unnamed components after their label entry, e.g. "=>[0:1:1:2]"
        if name and not name.startswith("=>["):
            return name
    return None


def _label_colour(label) -> tuple | None:
    from OCP.Quantity import Quantity_ColorRGBA
    from OCP.XCAFDoc import (
        XCAFDoc_ColorCurv,
        XCAFDoc_ColorGen,
        XCAFDoc_ColorSurf,
        XCAFDoc_ColorTool,
    )

    colour = Quantity_ColorRGBA()
    for kind in (XCAFDoc_ColorSurf, XCAFDoc_ColorGen, XCAFDoc_ColorCurv):
        if XCAFDoc_ColorTool.GetColor_s(label, kind, colour):
            rgb = colour.GetRGB()
            return (
                round(rgb.Red(), 4),
                round(rgb.Green(), 4),
                round(rgb.Blue(), 4),
                round(colour.Alpha(), 4),
            )
    return None


def _face_colours(label, shape) -> dict[int, tuple]:
    """Face index (as `tessellate_shape` numbers them) -> colour, from coloured sub-shapes."""
    from OCP.OCP.collections import (
        IndexedMap_TopoDS_Shape_TopTools_ShapeMapHasher as TopTools_IndexedMapOfShape,
    )
    from OCP.OCP.collections import Sequence_TDF_Label
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp, TopExp_Explorer
    from OCP.XCAFDoc import XCAFDoc_ShapeTool

    subshapes = Sequence_TDF_Label()
    XCAFDoc_ShapeTool.GetSubShapes_s(label, subshapes)
    if not len(subshapes):
        return {}
    faces = TopTools_IndexedMapOfShape()
    TopExp.MapShapes_s(shape, TopAbs_FACE, faces)
    colours: dict[int, tuple] = {}
    # coloured solids and shells first so that face colours, applied after, win
    ordered = sorted(
        subshapes, key=lambda sub: XCAFDoc_ShapeTool.GetShape_s(sub).ShapeType() == TopAbs_FACE
    )
    for sub in ordered:
        colour = _label_colour(sub)
        if colour is None:
            continue
        explorer = TopExp_Explorer(XCAFDoc_ShapeTool.GetShape_s(sub), TopAbs_FACE)
        while explorer.More():
            index = faces.FindIndex(explorer.Current())
            if index:
                colours[index] = colour
            explorer.Next()
    return colours


def _model_diagonal(labels) -> float:
    from OCP.BRep import BRep_Builder
    from OCP.TopoDS import TopoDS_Compound
    from OCP.XCAFDoc import XCAFDoc_ShapeTool

    compound = TopoDS_Compound()
    builder = BRep_Builder()
    builder.MakeCompound(compound)
    for label in labels:
        builder.Add(compound, XCAFDoc_ShapeTool.GetShape_s(label))
    return bounding_diagonal(compound)


def _topology_counts(shape) -> tuple[int, int]:
    """(bodies, free edges): solids + shells outside solids + faces outside shells, and
    edges bounded by one face only."""
    from OCP.BRep import BRep_Tool
    from OCP.OCP.collections import (
        IndexedDataMap_TopoDS_Shape_List_TopoDS_Shape_TopTools_ShapeMapHasher as EdgeFaces,
    )
    from OCP.TopAbs import TopAbs_EDGE, TopAbs_FACE, TopAbs_SHELL, TopAbs_SOLID
    from OCP.TopExp import TopExp, TopExp_Explorer
    from OCP.TopoDS import TopoDS

    def count(kind, outside=None) -> int:
        explorer = (
            TopExp_Explorer(shape, kind, outside) if outside else TopExp_Explorer(shape, kind)
        )
        total = 0
        while explorer.More():
            total += 1
            explorer.Next()
        return total

    bodies = (
        count(TopAbs_SOLID) + count(TopAbs_SHELL, TopAbs_SOLID) + count(TopAbs_FACE, TopAbs_SHELL)
    )
    # MapShapesAndAncestors lists a face twice for its seam edge, so seams are not counted
    edge_faces = EdgeFaces()
    TopExp.MapShapesAndAncestors_s(shape, TopAbs_EDGE, TopAbs_FACE, edge_faces)
    free = 0
    for index in range(1, edge_faces.Extent() + 1):
        if edge_faces.FindFromIndex(index).Size() == 1:
            if not BRep_Tool.Degenerated_s(TopoDS.Edge(edge_faces.FindKey(index))):
                free += 1
    return bodies, free


# -- PMI and metadata ------------------------------------------------------------------


def _pmi_facts(document) -> dict[str, int]:
    from OCP.OCP.collections import Sequence_TDF_Label
    from OCP.XCAFDoc import XCAFDoc_DimTolTool, XCAFDoc_DocumentTool

    tool = XCAFDoc_DocumentTool.DimTolTool_s(document.Main())
    annotations = []
    for method in (tool.GetDimensionLabels, tool.GetGeomToleranceLabels, tool.GetDatumLabels):
        labels = Sequence_TDF_Label()
        method(labels)
        annotations.extend(labels)
    referenced = set()
    for label in annotations:
        first, second = Sequence_TDF_Label(), Sequence_TDF_Label()
        if XCAFDoc_DimTolTool.GetRefShapeLabel_s(label, first, second):
            referenced.update(_entry(shape) for shape in (*first, *second))
    views = Sequence_TDF_Label()
    XCAFDoc_DocumentTool.ViewTool_s(document.Main()).GetViewLabels(views)
    return {
        "annotation_count": len(annotations),
        "annotation_group_count": len(views),
        "pmi_component_count": len(referenced),
    }


def _metadata_facts(document) -> dict[str, int]:
    from OCP.TDataStd import TDataStd_NamedData
    from OCP.TDF import TDF_ChildIterator
    from OCP.XCAFDoc import XCAFDoc_DocumentTool

    components = properties = 0
    iterator = TDF_ChildIterator(XCAFDoc_DocumentTool.ShapesLabel_s(document.Main()), True)
    while iterator.More():
        data = TDataStd_NamedData()
        if iterator.Value().FindAttribute(TDataStd_NamedData.GetID_s(), data):
            data.LoadDeferredData()
            count = (
                data.GetIntegersContainer().Size()
                + data.GetRealsContainer().Size()
                + data.GetStringsContainer().Size()
                + data.GetBytesContainer().Size()
                + data.GetArraysOfIntegersContainer().Size()
                + data.GetArraysOfRealsContainer().Size()
            )
            if count:
                components += 1
                properties += count
        iterator.Next()
    return {"metadata_component_count": components, "metadata_property_count": properties}


READERS = {
    "step": read_step,
    "stp": read_step,
    "iges": read_iges,
    "igs": read_iges,
    "brep": read_brep,
}
WRITERS: dict = {}
