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

    sag_ratio: float | None = None
    """Chord error as a fraction of each part's bounding-box diagonal, so small parts keep
    their shape; the smaller of this and ``max_sag`` wins. None (default): the preset's."""

    max_angle: float | None = None
    """Largest angle in degrees between neighbouring normals on curved faces. None
    (default): the preset's."""

    parallel: bool = True
    """Mesh the faces of a part on several threads (OCCT's own pool). Default True."""


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
    for name in ("max_sag", "sag_ratio", "max_angle"):
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise OptionsError(f"tessellation {name} must be > 0, got {value}")
    max_sag = options.max_sag
    if max_sag is None:
        max_sag = preset.max_sag_ratio * model_diagonal
    sag_ratio = options.sag_ratio if options.sag_ratio is not None else preset.sag_ratio
    sag = min(max_sag, sag_ratio * part_diagonal) if part_diagonal > 0 else max_sag
    # an empty or degenerate model has no diagonal; OCCT still needs a positive value
    sag = sag if sag > 0 else 1e-3
    angle = options.max_angle if options.max_angle is not None else preset.max_angle
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
        if not triangulation.HasNormals():
            BRepLib_ToolTriangulatedShape.ComputeNormals_s(face, triangulation)
        result.append(_face_arrays(index, face, triangulation, location, TopAbs_REVERSED))
    logger.debug(
        "tessellated %d of %d faces into %d triangles (sag %.4g, angle %.1f deg)",
        len(result),
        faces.Extent(),
        sum(len(f.triangles) for f in result),
        linear,
        math.degrees(angular),
    )
    return result


def _face_arrays(index, face, triangulation, location, reversed_orientation) -> FaceTriangles:
    count = triangulation.NbNodes()
    vertices = np.empty((count, 3), dtype=np.float64)
    normals = np.empty((count, 3), dtype=np.float64) if triangulation.HasNormals() else None
    for i in range(count):
        point = triangulation.Node(i + 1)
        vertices[i] = (point.X(), point.Y(), point.Z())
        if normals is not None:
            normal = triangulation.Normal(i + 1)
            normals[i] = (normal.X(), normal.Y(), normal.Z())
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
    return FaceTriangles(index, vertices, triangles, normals)


def location_matrix(location) -> np.ndarray:
    """A TopLoc_Location as a 4x4 row-major numpy matrix."""
    transform = location.Transformation()
    matrix = np.eye(4)
    for row in range(3):
        for col in range(4):
            matrix[row, col] = transform.Value(row + 1, col + 1)
    return matrix
