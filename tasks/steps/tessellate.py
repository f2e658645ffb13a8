"""Turn CAD B-rep shapes into triangles within a chord-error budget (PiXYZ-like quality presets).

A B-rep (STEP, IGES, BREP) holds exact surfaces; a mesh approximates them. The
budget is the *sag* (chord error: the largest distance between a triangle and the
surface it stands for) and the largest angle between neighbouring normals on
curved faces. The CAD reader calls `tessellate_shape` once per distinct part.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from tasks.steps.errors import OptionsError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TessellateOptions:
    """How finely B-rep faces are cut into triangles."""

    preset: str = "medium"
    """``very_high``, ``high``, ``medium`` or ``low``; fills every tolerance left at None.
    Default ``medium``."""

    max_sag: float | None = None
    """Largest chord error in model units (mm for most STEP files). None (default): the
    preset's ratio of the whole model's bounding-box diagonal."""

    relative_sag: float | None = None
    """Largest chord error as a fraction of the whole model's bounding-box diagonal,
    instead of the preset's ratio; with ``max_sag`` too, the smaller wins. Default None."""

    sag_ratio: float | None = None
    """Chord error as a fraction of each part's bounding-box diagonal, so small parts keep
    their shape; the smaller of this and the model's sag wins. None (default): the preset's,
    unless ``max_sag`` or ``relative_sag`` is set (an explicit sag is then what you get)."""

    max_angle: float | None = None
    """Largest angle in degrees between neighbouring normals on curved faces. None
    (default): the preset's."""

    normals: bool = True
    """Give each vertex the exact surface normal of its face. Default True; False leaves
    normals to the writer (computed from the triangles)."""

    uvs: bool = False
    """Give each vertex texture coordinates: its face's surface parameters (u, v), scaled
    to [0, 1] over the face. Default False."""

    coarsen: float = 1.0
    """Factor every sag is multiplied by, and the angle too (up to 60 degrees), after the
    rest is worked out: the same settings made coarser, for levels of detail (4: roughly a
    quarter of the triangles on curved faces; planar faces cannot get lighter). Default 1."""

    parallel: bool = True
    """Mesh the faces of a part on several threads (OCCT's own pool). Default True.

    On 100 distinct drilled plates (3,320 faces) it split 2.5 s of meshing over 2 threads,
    busiest 1.33 s (1.95× on 2 free cores, ``bench/fanout.py``), for ~5 % more CPU. Parts
    are not sent to child Ray tasks instead: shipping their B-reps is cheap (0.08 s), but
    the gain left over OCCT's threads is our one-thread read-back of the triangles (1.6 s),
    next to the one-thread STEP transfer that comes first (4.3 s CPU)."""


TESSELLATE_DEFAULTS = TessellateOptions()


@dataclass(frozen=True)
class _Preset:
    max_sag_ratio: float  # of the whole model's diagonal
    sag_ratio: float  # of the part's diagonal
    max_angle: float  # degrees


# Ratios are chosen so `medium` gives the triangle counts the corpus notes (~11k for
# AS1) and each step up roughly doubles them, as PiXYZ's presets do.
PRESETS: dict[str, _Preset] = {
    "very_high": _Preset(max_sag_ratio=0.0002, sag_ratio=0.0005, max_angle=5.0),
    "high": _Preset(max_sag_ratio=0.0005, sag_ratio=0.001, max_angle=10.0),
    "medium": _Preset(max_sag_ratio=0.001, sag_ratio=0.003, max_angle=20.0),
    "low": _Preset(max_sag_ratio=0.004, sag_ratio=0.01, max_angle=35.0),
}


_COARSEST_ANGLE = 60.0
"""Degrees `coarsen` may widen the angle to: beyond it a cylinder becomes a prism."""


@dataclass(frozen=True)
class FaceTriangles:
    """The triangles of one B-rep face, in the coordinates of the shape that was meshed."""

    face_index: int
    """1-based index of the face in `TopExp.MapShapes_s(shape, TopAbs_FACE)` order."""
    vertices: np.ndarray
    """(n, 3) float64 positions."""
    triangles: np.ndarray
    """(m, 3) int64 indices into ``vertices``, wound so the normal points out of the solid."""
    normals: np.ndarray | None
    """(n, 3) float64 surface normals at the vertices, or None where OCCT gave none."""
    uvs: np.ndarray | None = None
    """(n, 2) float64 surface parameters scaled to [0, 1] over the face, when asked for."""


def tolerances(
    options: TessellateOptions, model_diagonal: float, part_diagonal: float
) -> tuple[float, float]:
    """The (linear deflection, angular deflection in radians) OCCT is asked for on one part.

    Settings that trade off: ``TessellateOptions("low")`` for quick previews (a few
    thousand triangles per assembly), ``"medium"`` for viewing, ``"very_high"`` or an
    explicit ``max_sag=0.01`` (mm) for inspection and rendering close-ups.
    """
    preset = PRESETS.get(options.preset)
    if preset is None:
        raise OptionsError(
            f"unknown tessellation preset '{options.preset}' (use one of {', '.join(PRESETS)})"
        )
    for name in ("max_sag", "relative_sag", "sag_ratio", "max_angle", "coarsen"):
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise OptionsError(f"tessellation {name} must be > 0, got {value}")
    explicit = [
        sag
        for sag in (
            options.max_sag,
            None if options.relative_sag is None else options.relative_sag * model_diagonal,
        )
        if sag is not None
    ]
    max_sag = min(explicit) if explicit else preset.max_sag_ratio * model_diagonal
    sag_ratio = options.sag_ratio
    if sag_ratio is None and not explicit:
        sag_ratio = preset.sag_ratio
    sag = min(max_sag, sag_ratio * part_diagonal) if sag_ratio and part_diagonal > 0 else max_sag
    # an empty or degenerate model has no diagonal; OCCT still needs a positive value
    sag = (sag if sag > 0 else 1e-3) * options.coarsen
    angle = options.max_angle if options.max_angle is not None else preset.max_angle
    angle = max(angle, min(angle * options.coarsen, _COARSEST_ANGLE))
    return sag, math.radians(angle)


def bounding_diagonal(shape) -> float:
    """Length of the axis-aligned bounding-box diagonal of an OCP shape (0 if it is empty)."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.Add_s(shape, box, False)
    if box.IsVoid():
        return 0.0
    low, high = box.CornerMin(), box.CornerMax()
    return math.dist((low.X(), low.Y(), low.Z()), (high.X(), high.Y(), high.Z()))


def tessellate_shape(
    shape, options: TessellateOptions = TESSELLATE_DEFAULTS, model_diagonal: float | None = None
) -> list[FaceTriangles]:
    """Mesh every face of an OCP shape and return the triangles face by face.

    The mesh is stored on the shape (OCCT caches it), so meshing one part that is
    placed many times costs once. ``model_diagonal`` is the whole model's bounding-box
    diagonal that the preset's ``max_sag`` ratio refers to; None uses the part's own.
    Faces OCCT cannot mesh are left out and logged; the caller counts them.

    Reference: OCCT BRepMesh_IncrementalMesh (linear/angular deflection).
    """
    from OCP.BRep import BRep_Tool
    from OCP.BRepLib import BRepLib_ToolTriangulatedShape
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.OCP.collections import (
        IndexedMap_TopoDS_Shape_TopTools_ShapeMapHasher as TopTools_IndexedMapOfShape,
    )
    from OCP.TopAbs import TopAbs_FACE, TopAbs_REVERSED
    from OCP.TopExp import TopExp
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS

    # 1. choose the tolerances for this part
    part_diagonal = bounding_diagonal(shape)
    linear, angular = tolerances(
        options, model_diagonal if model_diagonal else part_diagonal, part_diagonal
    )

    # 2. mesh (OCCT keeps the result on the faces)
    BRepMesh_IncrementalMesh(shape, linear, False, angular, options.parallel)

    # 3. read each face's triangulation back
    faces = TopTools_IndexedMapOfShape()
    TopExp.MapShapes_s(shape, TopAbs_FACE, faces)
    result: list[FaceTriangles] = []
    for index in range(1, faces.Extent() + 1):
        face = TopoDS.Face(faces.FindKey(index))
        location = TopLoc_Location()
        triangulation = BRep_Tool.Triangulation_s(face, location)
        if triangulation is None or triangulation.NbTriangles() == 0:
            continue
        if options.normals and not triangulation.HasNormals():
            BRepLib_ToolTriangulatedShape.ComputeNormals_s(face, triangulation)
        result.append(_face_arrays(index, face, triangulation, location, TopAbs_REVERSED, options))
    logger.debug(
        "tessellated %d of %d faces into %d triangles (sag %.4g, angle %.1f deg)",
        len(result),
        faces.Extent(),
        sum(len(f.triangles) for f in result),
        linear,
        math.degrees(angular),
    )
    return result


def _face_arrays(
    index, face, triangulation, location, reversed_orientation, options: TessellateOptions
) -> FaceTriangles:
    count = triangulation.NbNodes()
    vertices = np.empty((count, 3), dtype=np.float64)
    with_normals = options.normals and triangulation.HasNormals()
    normals = np.empty((count, 3), dtype=np.float64) if with_normals else None
    with_uvs = options.uvs and triangulation.HasUVNodes()
    uvs = np.empty((count, 2), dtype=np.float64) if with_uvs else None
    for i in range(count):
        point = triangulation.Node(i + 1)
        vertices[i] = (point.X(), point.Y(), point.Z())
        if normals is not None:
            normal = triangulation.Normal(i + 1)
            normals[i] = (normal.X(), normal.Y(), normal.Z())
        if uvs is not None:
            uv = triangulation.UVNode(i + 1)
            uvs[i] = (uv.X(), uv.Y())
    if uvs is not None:
        # parameters are lengths on planes and angles on cylinders: scale each face to [0, 1]
        low, span = uvs.min(axis=0), np.ptp(uvs, axis=0)
        uvs = (uvs - low) / np.where(span > 0, span, 1.0)
    triangles = np.empty((triangulation.NbTriangles(), 3), dtype=np.int64)
    for i in range(len(triangles)):
        triangles[i] = triangulation.Triangle(i + 1).Get()
    triangles -= 1
    reverse = face.Orientation() == reversed_orientation
    if reverse:
        triangles = triangles[:, ::-1].copy()
        if normals is not None:
            normals = -normals
    if not location.IsIdentity():
        matrix = location_matrix(location)
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
        if normals is not None:
            normals = normals @ matrix[:3, :3].T
    return FaceTriangles(index, vertices, triangles, normals, uvs)


def clear_meshes(shape) -> None:
    """Drop the triangulations OCCT keeps on ``shape``'s faces, so the next
    `tessellate_shape` meshes it afresh (OCCT keeps a finer mesh when asked for a coarser one).
    """
    from OCP.BRepTools import BRepTools

    BRepTools.Clean_s(shape)


def location_matrix(location) -> np.ndarray:
    """A TopLoc_Location as a 4x4 row-major numpy matrix."""
    transform = location.Transformation()
    matrix = np.eye(4)
    for row in range(3):
        for col in range(4):
            matrix[row, col] = transform.Value(row + 1, col + 1)
    return matrix
