"""Find instances: meshes that are one shape moved about (bolts, screws) become one mesh placed N times.

Files exported with every placement baked into its own mesh (STL-like exports, merged
CAD, many glTF converters) store the same bolt hundreds of times. This step finds the
meshes that are the same up to a rigid motion, keeps one of each, and points every
placement at it with a node transform that puts it exactly where the copy was: the
file gets smaller, viewers draw instances, and later steps (decimate) work once.

Two meshes are the same when they have the same material, vertex and triangle counts,
and some rotation and translation maps every vertex, texture coordinate and triangle
centre of one onto the other within ``tolerance``. The motion is found from each mesh's
*canonical pose*: its centroid and principal axes (PCA), signs chosen by the skew of
the vertices along each axis. Where that is ambiguous -- a bolt turns about its axis,
a cube has three equal axes, a symmetric part has no skew -- every axis choice that
is consistent with the shape is tried (the directions of the vertices farthest from
the axis, both signs), and each is verified by nearest-neighbour distances.
Mirror images are different parts and are never merged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from tasks.steps._meshes import is_mesh, material_key, placements, vertex_colors, vertex_uv
from tasks.steps.errors import OptionsError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FindInstancesOptions:
    """How alike two meshes must be to become one."""

    tolerance: float = 1e-4
    """Largest distance between matched vertices, as a fraction of the mesh's bounding-box
    diagonal. Default 1e-4 (0.01 mm on a 100 mm part: float round-off of baked
    placements, not a different tessellation)."""

    max_candidates: int = 64
    """Axis choices tried per pair when the pose is ambiguous (a part turned about an
    axis of symmetry). Default 64; more finds instances of finely symmetric parts, at a
    cost in time."""

    min_triangles: int = 1
    """Meshes with fewer triangles are left alone. Default 1 (all)."""


FIND_INSTANCES_DEFAULTS = FindInstancesOptions()

_QUICK_POINTS = 64
"""Vertices checked first for each candidate motion, before all of them."""


def find_instances(
    scene: Scene, options: FindInstancesOptions | None = None, report: dict | None = None
) -> Scene:
    """Replace copies of a mesh by placements of one mesh; world positions are unchanged.

    Every placement of a copy keeps its node (name, place in the tree) and shows the kept
    mesh through a transform that differs from its own by the rigid motion found (a node
    with children gets a child node instead, so that the children stay put). Meshes
    already placed several times stay so.

    Settings: the default ``tolerance=1e-4`` merges exact copies that were baked into
    place; ``1e-3`` also merges copies written with few decimals (OBJ, STL in mm);
    ``max_candidates=256`` for parts with many equal features around an axis.

    Run it on meshes as read, before `merge` (which would join the copies) and before
    `decimate` (which would make the copies differ). ``report``, when given, receives
    ``instances_found`` (meshes replaced by another), ``meshes_before``,
    ``meshes_after``, ``triangles_stored_before``, ``triangles_stored_after``,
    ``bytes_stored_before`` and ``bytes_stored_after`` (vertex and index buffers as glTF
    stores them).

    Reference: canonical pose by principal component analysis, as in Kazhdan et al.,
    "Symmetry descriptors and 3D shape matching" (2004), section 2.
    """
    options = options or FIND_INSTANCES_DEFAULTS
    _check(options)
    graph = scene.trimesh_scene.graph

    # 1. The meshes placed in the scene, grouped by what a copy must share
    meshes: dict[str, trimesh.Trimesh] = {}
    skipped = 0
    for placement in placements(scene.trimesh_scene):
        if is_mesh(placement.geometry):
            meshes[placement.geometry_name] = placement.geometry
        else:
            skipped += 1
    before = _stored(meshes.values())

    # 2. Each mesh against the kept meshes of its group: the first that matches takes it
    kept: dict[tuple, list[_Shape]] = {}
    found: dict[str, tuple[str, np.ndarray]] = {}
    face_coloured = 0
    for name, mesh in meshes.items():
        signature = _signature(mesh)
        face_coloured += signature is None
        if signature is None or len(mesh.faces) < options.min_triangles:
            continue
        shape = _Shape(name, mesh, options)
        for prototype in kept.setdefault(signature, []):
            motion = _match(prototype, shape, options)
            if motion is not None:
                found[name] = (prototype.name, motion)
                break
        else:
            kept[signature].append(shape)

    # 3. Point every placement of a copy at its prototype, then drop the copy
    for node in list(graph.nodes_geometry):
        _, name = graph[node]
        if name in found:
            prototype, motion = found[name]
            _place(graph, node, prototype, motion)
    for name in found:
        scene.trimesh_scene.geometry.pop(name, None)

    # 4. Say what was done
    after = _stored(m for n, m in meshes.items() if n not in found)
    numbers = {
        "instances_found": len(found),
        "meshes_before": len(meshes),
        "meshes_after": len(meshes) - len(found),
        "triangles_stored_before": before[0],
        "triangles_stored_after": after[0],
        "bytes_stored_before": before[1],
        "bytes_stored_after": after[1],
    }
    if report is not None:
        report.update(numbers)
    if skipped:
        scene.warn(
            f"find_instances: skipped {skipped} placed geometries that are not triangle meshes"
        )
    if face_coloured:
        scene.warn(f"find_instances: left {face_coloured} meshes with per-face colours alone")
    logger.debug("find_instances: %s", numbers)
    return scene


class _Shape:
    """A mesh's data for matching: positions, features and its candidate canonical poses."""

    def __init__(self, name: str, mesh: trimesh.Trimesh, options: FindInstancesOptions):
        self.name = name
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.tolerance = options.tolerance * float(np.linalg.norm(np.ptp(self.vertices, axis=0)))
        self.centroid, self.frames, self.sigma = _frames(
            self.vertices, self.tolerance, options.max_candidates
        )
        self.centres = self.vertices[mesh.faces].mean(axis=1)
        # texture coordinates and colours must match too: scaled to the part's size
        size = max(self.tolerance / options.tolerance, 1e-30)
        extra = [a * size for a in (vertex_uv(mesh),) if a is not None]
        colors = vertex_colors(mesh)
        if colors is not None:
            extra.append(np.asarray(colors, dtype=np.float64) / 255.0 * size)
        self.extra = np.hstack(extra) if extra else None
        self._trees: dict[str, cKDTree] = {}

    def features(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.extra is None else np.hstack([positions, self.extra])

    def tree(self, kind: str) -> cKDTree:
        if kind not in self._trees:
            points = self.features(self.vertices) if kind == "vertices" else self.centres
            self._trees[kind] = cKDTree(points)
        return self._trees[kind]


def _signature(mesh: trimesh.Trimesh) -> tuple | None:
    """What two copies share exactly; None for meshes this step leaves alone."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "face":
        return None  # per-face colours would have to follow the triangle order
    return (
        material_key(mesh),
        vertex_uv(mesh) is not None,
        vertex_colors(mesh) is not None,
        len(mesh.vertices),
        len(mesh.faces),
    )


def _frames(points: np.ndarray, tolerance: float, limit: int):
    """(centroid, candidate rotations whose columns are the canonical axes, axis spreads).

    The first rotation is the mesh's own canonical pose; the others are the choices a
    copy may need where the pose is ambiguous.
    """
    centroid = points.mean(axis=0)
    centred = points - centroid
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    values, vectors = values[::-1], vectors[:, ::-1]
    sigma = np.sqrt(np.maximum(values, 0.0))
    # axes whose spreads are this close may swap or turn between copies
    close = 0.01 * sigma[0] + 2 * tolerance
    first_two, last_two = sigma[0] - sigma[1] < close, sigma[1] - sigma[2] < close
    if not first_two and not last_two:
        frames = [
            _frame(a, b)
            for a in _signs(centred, vectors[:, 0], sigma[0])
            for b in _signs(centred, vectors[:, 1], sigma[0])
        ]
    elif first_two and last_two:
        spacing = _spacing(centred, sigma[0])
        frames = [
            _frame(a, b)
            for a in _farthest(centred, None, spacing, tolerance, limit)
            for b in _farthest(centred, a, spacing, tolerance, 8)
        ]
    else:
        axis = vectors[:, 2] if first_two else vectors[:, 0]
        spacing = _spacing(centred, sigma[0])
        frames = [
            _frame(a, b)
            for a in _signs(centred, axis, sigma[0])
            for b in _farthest(centred, a, spacing, tolerance, limit)
        ]
    return centroid, [f for f in frames if f is not None], sigma


def _signs(centred: np.ndarray, axis: np.ndarray, scale: float) -> list[np.ndarray]:
    """The axis pointing where the vertices are skewed, or both ways when they are not."""
    skew = float(np.mean((centred @ axis) ** 3))
    if abs(skew) > 0.01 * scale**3:
        return [axis if skew > 0 else -axis]
    return [axis, -axis]


def _spacing(centred: np.ndarray, scale: float) -> np.ndarray:
    """Each vertex's distance to the nearest vertex at another position: a rigid invariant
    that tells apart vertices equally far from the centre (0 where none is found)."""
    distances, _ = cKDTree(centred).query(centred, k=min(8, len(centred)))
    distances = np.where(distances > 1e-9 * scale, distances, np.inf).min(axis=1)
    return np.where(np.isfinite(distances), distances, 0.0)


def _farthest(
    centred: np.ndarray,
    axis: np.ndarray | None,
    spacing: np.ndarray,
    tolerance: float,
    limit: int,
) -> list[np.ndarray]:
    """Directions (across ``axis``, if given) of the vertices farthest from it, farthest first.

    A copy's farthest vertex may be any vertex within ``2 * tolerance`` of the farthest,
    so all of those are offered (one per direction, up to ``limit``); among many (a
    sphere), those with the widest ``spacing`` only, which a copy picks alike."""
    radial = centred if axis is None else centred - np.outer(centred @ axis, axis)
    lengths = np.linalg.norm(radial, axis=1)
    reach = lengths.max() if len(lengths) else 0.0
    if reach <= 0:
        return []
    near = np.flatnonzero(lengths >= reach - 2 * tolerance - 1e-9 * reach)
    if len(near) > limit:
        near = near[spacing[near] >= spacing[near].max() - 4 * tolerance]
    near = near[np.argsort(-lengths[near], kind="stable")][: limit * 4]
    directions: list[np.ndarray] = []
    for index in near:
        direction = radial[index] / lengths[index]
        if all(float(direction @ other) < 1 - 1e-9 for other in directions):
            directions.append(direction)
            if len(directions) == limit:
                break
    return directions


def _frame(first: np.ndarray, second: np.ndarray) -> np.ndarray | None:
    """A right-handed rotation whose columns are ``first``, ``second`` made orthogonal to
    it, and their cross product."""
    second = second - (second @ first) * first
    length = np.linalg.norm(second)
    if length < 1e-9:
        return None
    second = second / length
    return np.column_stack([first, second, np.cross(first, second)])


def _match(prototype: _Shape, copy: _Shape, options: FindInstancesOptions) -> np.ndarray | None:
    """The 4x4 motion taking ``prototype``'s vertices onto ``copy``'s, or None."""
    tolerance = max(prototype.tolerance, copy.tolerance)
    if np.abs(prototype.sigma - copy.sigma).max() > tolerance or not prototype.frames:
        return None
    own = prototype.frames[0]
    centred = prototype.vertices - prototype.centroid
    step = max(1, len(centred) // _QUICK_POINTS)
    quick = np.arange(0, len(centred), step)[:_QUICK_POINTS]
    for frame in copy.frames:
        rotation = frame @ own.T
        # 1. a few vertices first: most wrong axis choices fail here
        few = centred[quick] @ rotation.T + copy.centroid
        if prototype.extra is not None:
            few = np.hstack([few, prototype.extra[quick]])
        distance, _ = copy.tree("vertices").query(few)
        if distance.max() > tolerance:
            continue
        # 2. every vertex both ways, and every triangle centre
        moved = centred @ rotation.T + copy.centroid
        distance, _ = copy.tree("vertices").query(prototype.features(moved))
        if distance.max() > tolerance:
            continue
        back = (copy.vertices - copy.centroid) @ rotation + prototype.centroid
        distance, _ = prototype.tree("vertices").query(copy.features(back))
        if distance.max() > tolerance:
            continue
        centres = (prototype.centres - prototype.centroid) @ rotation.T + copy.centroid
        distance, _ = copy.tree("centres").query(centres)
        if distance.max() > tolerance:
            continue
        motion = np.eye(4)
        motion[:3, :3] = rotation
        motion[:3, 3] = copy.centroid - rotation @ prototype.centroid
        return motion
    return None


def _place(graph, node: str, prototype: str, motion: np.ndarray) -> None:
    """Show ``prototype`` at ``node`` moved by ``motion`` (node-local), so it lands where
    the copy was."""
    parent = graph.transforms.parents[node]
    local = graph.transforms.edge_data[(parent, node)].get("matrix", np.eye(4))
    if not graph.transforms.children.get(node):
        graph.update(frame_from=parent, frame_to=node, matrix=local @ motion, geometry=prototype)
        return
    # a node with children: moving it would move them; the mesh goes on a new child
    child = trimesh.util.unique_name(f"{node}_{prototype}", graph.transforms.node_data)
    graph.update(frame_from=node, frame_to=child, matrix=motion, geometry=prototype)
    forest = graph.transforms
    forest.node_data[node].pop("geometry", None)
    forest.edge_data[(parent, node)].pop("geometry", None)
    # mark the graph changed, as trimesh's own edits (and `units`) do
    forest._hash = None
    forest._cache = {}
    graph._cache.clear()


def _stored(meshes) -> tuple[int, int]:
    """(triangles, bytes) stored for these meshes: positions, normals, UVs, colours and
    32-bit indices, as a GLB holds them."""
    triangles = size = 0
    for mesh in meshes:
        per_vertex = 12 + 12 + (8 if vertex_uv(mesh) is not None else 0)
        per_vertex += 4 if vertex_colors(mesh) is not None else 0
        triangles += len(mesh.faces)
        size += len(mesh.vertices) * per_vertex + len(mesh.faces) * 12
    return triangles, size


def _check(options: FindInstancesOptions) -> None:
    if not options.tolerance > 0:
        raise OptionsError(f"find_instances: tolerance must be > 0, got {options.tolerance}")
    if options.max_candidates < 1:
        raise OptionsError(
            f"find_instances: max_candidates must be at least 1, got {options.max_candidates}"
        )
    if options.min_triangles < 0:
        raise OptionsError(
            f"find_instances: min_triangles must be >= 0, got {options.min_triangles}"
        )
