"""Remove hidden geometry: what no viewpoint around (or inside) the model ever sees.

Draws ID buffers of the scene, each pixel saying which placed mesh and which of
its triangles is nearest, from a documented set of viewpoints: ``views``
directions spread evenly on a sphere (a Fibonacci lattice), each an orthographic
view framing the whole model, plus, for cavities a viewer can enter (a cabin,
an open machine), six perspective views (a cube map) from each of
``interior_points``. Whatever no pixel of any view shows is removed, at the
level the caller picks: a placed part, a whole mesh, or single triangles.

Two backends give the same pixels: OpenGL through `_gl` (EGL: the NVIDIA
driver on a GPU node, Mesa llvmpipe on a CPU one) and ray casting with Embree
(`embreex`), one ray per pixel centre. ``backend="auto"`` takes the GPU when
there is one, else the one measured faster on two CPU cores for the scene's size (see
`EMBREE_FROM_TRIANGLES`).

Shaped after PiXYZ's ``removeHiddenGeometry`` / ``removeOccludedGeometries``
(viewpoints on a sphere, an ID-buffer precision, part/patch/polygon levels).

Not fanned out over viewpoint batches, though it could be exactly: the views are
independent, and removal depends only on the pixels per placed triangle summed over all
views (`_seen`), so batches of cameras could each run as a child task on a GPU node and
their (key, count) hits be summed, with the same result. The optimize pipeline already
runs the whole step as one child task on the ``gpu`` queue. Every batch would ship the
scene again and pay its own GL context and mesh upload (`_gl.IdScene`) or Embree build,
which are the fixed part of the step, while a GPU draws a 256² ID buffer in far less than
that; so it would pay only with several GPU nodes and thousands of views at high
precision. Not measured: no GPU on the machine this was written on, so it waits for a
measurement on a GPU cluster (``bench/dataprep.py``'s remove_hidden rows, views x nodes).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import trimesh

from tasks.steps._meshes import is_mesh, keep_vertices, placements
from tasks.steps.errors import OptionsError, RenderError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

LEVELS = ("part", "mesh", "triangle")
"""``part``: remove each placed node never seen; ``mesh``: remove a geometry only when
none of its placements is seen; ``triangle``: as ``part``, then remove from each mesh
the triangles none of its placements shows."""

BACKENDS = ("auto", "gl", "embree")

EMBREE_FROM_TRIANGLES = 50_000
"""Without a GPU, ``auto`` casts rays with Embree from this many placed triangles up and
draws with llvmpipe below it. Measured on 2 shared CPU cores, 64 views at 256² (best of
5): the 22k-triangle housing 0.85 s GL / 1.98 s Embree, AS1 (6.5k) 0.43 / 0.56, the milk
truck (3.6k) 0.26 / 0.74, the 110k-triangle 2CylinderEngine 3.5 / 1.6: GL cost grows with
triangles x views, Embree's with rays (see ``bench/dataprep.py``)."""


@dataclass(frozen=True)
class RemoveHiddenOptions:
    """Which viewpoints decide what is seen, and what to remove."""

    level: str = "part"
    """One of `LEVELS`. Default: ``part``."""

    precision: int = 256
    """ID buffer side in pixels, 16..4096: a part or triangle narrower than about
    ``diagonal / precision`` from every view may be missed. Default: 256."""

    views: int = 64
    """Viewing directions on a Fibonacci sphere, 1..4096, each an orthographic view of the
    whole model. Default: 64 (neighbours about 25 degrees apart)."""

    interior_points: tuple[tuple[float, float, float], ...] = ()
    """World points to look out from, six 90-degree perspective views each, for cavities a
    viewer enters (a car cabin). Default: none."""

    min_pixels: int = 1
    """Pixels (summed over all views) a part or triangle needs to count as seen; raise it to
    also drop what only peeks through a crack. Default: 1."""

    backend: str = "auto"
    """One of `BACKENDS`: ``gl`` (OpenGL ID buffers), ``embree`` (ray casting) or ``auto``
    (GL on a GPU; on a CPU, Embree from `EMBREE_FROM_TRIANGLES` up, else GL). Default:
    ``auto``."""


REMOVE_HIDDEN_DEFAULTS = RemoveHiddenOptions()

_REPORT_NAMES = 50
"""Removed part names listed in the report."""


def remove_hidden(
    scene: Scene, options: RemoveHiddenOptions | None = None, report: dict | None = None
) -> Scene:
    """Remove the parts, meshes or triangles of ``scene`` that no viewpoint sees, in place.

    Every triangle mesh hides what is behind it, except transparent ones (alpha
    blend or mask, translucent colours): they are kept whole and looked
    through. Point clouds and lines neither hide nor are removed.

    Settings: ``RemoveHiddenOptions()`` drops internal parts (bolts inside a
    closed housing) and keeps every part that shows a pixel at 256² from one
    of 64 directions; ``RemoveHiddenOptions(level="triangle", precision=1024)``
    also strips the inner faces of visible parts (a sheet-metal box's inside),
    at the risk of losing slivers thinner than a pixel; add
    ``interior_points=((x, y, z),)`` to keep what is seen from inside a cabin.
    More views find parts seen only through narrow openings; cost grows with
    ``views * precision²``.

    Run it before decimation (thin parts decimate into nothing anyway) and on
    a scene in its final placement (after merging it changes nothing: a merged
    mesh is one part). ``report``, when given, is filled with
    ``parts_removed``, ``removed_parts`` (names, at most 50),
    ``triangles_before``, ``triangles_after``, ``views`` and ``backend``.
    Reference: PiXYZ Studio, "Remove Hidden" (occlusion by viewpoints).
    """
    options = options or REMOVE_HIDDEN_DEFAULTS
    _check(options)
    report = report if report is not None else {}
    started = time.perf_counter()

    # 1. gather: placed meshes (opaque ones hide, transparent ones are kept whole)
    tm_scene = scene.trimesh_scene
    by_geometry: dict[str, list] = defaultdict(list)
    skipped = 0
    for placement in placements(tm_scene):
        if is_mesh(placement.geometry):
            by_geometry[placement.geometry_name].append(placement)
        elif len(getattr(placement.geometry, "vertices", ())) > 0:
            skipped += 1
    transparent = {name for name in by_geometry if _is_transparent(tm_scene.geometry[name])}
    tested = [name for name in by_geometry if name not in transparent]
    before = scene.triangle_count
    report.update(
        parts_removed=0,
        removed_parts=[],
        triangles_before=before,
        triangles_after=before,
        views=0,
        backend="",
    )
    if not tested:
        return scene

    # 2. look: every placed triangle seen by at least min_pixels pixels
    centre, radius = _frame(tm_scene)
    cameras = _cameras(options, centre, radius)
    occluders = [(name, by_geometry[name]) for name in tested]
    placed = sum(len(tm_scene.geometry[name].faces) * len(group) for name, group in occluders)
    backend = _pick_backend(options.backend, placed)
    if backend == "gl":
        seen = _seen_gl(occluders, cameras, options, centre)
    else:
        seen = _seen_embree(occluders, cameras, options, centre)

    # 3. remove what was never seen
    removed = _remove(scene, occluders, seen, options.level)
    if skipped:
        scene.warn(
            f"remove_hidden: kept {skipped} placed point clouds or lines (only meshes are tested)"
        )
    report.update(
        parts_removed=len(removed),
        removed_parts=removed[:_REPORT_NAMES],
        triangles_after=scene.triangle_count,
        views=len(cameras),
        backend=backend,
    )
    logger.debug(
        "remove_hidden %s: %d views (%s, %d²), %d parts removed, triangles %d -> %d in %.2f s",
        scene.source_name,
        len(cameras),
        backend,
        options.precision,
        len(removed),
        before,
        report["triangles_after"],
        time.perf_counter() - started,
    )
    return scene


def _check(options: RemoveHiddenOptions) -> None:
    if options.level not in LEVELS:
        raise OptionsError(f"remove_hidden: level must be one of {LEVELS}, got {options.level!r}")
    if options.backend not in BACKENDS:
        raise OptionsError(
            f"remove_hidden: backend must be one of {BACKENDS}, got {options.backend!r}"
        )
    if not 16 <= options.precision <= 4096:
        raise OptionsError(f"remove_hidden: precision must be 16..4096, got {options.precision}")
    if not 1 <= options.views <= 4096:
        raise OptionsError(f"remove_hidden: views must be 1..4096, got {options.views}")
    if options.min_pixels < 1:
        raise OptionsError(f"remove_hidden: min_pixels must be >= 1, got {options.min_pixels}")
    for point in options.interior_points:
        if len(point) != 3 or not np.all(np.isfinite(point)):
            raise OptionsError(f"remove_hidden: interior point {point!r} is not an (x, y, z)")


def _is_transparent(mesh: trimesh.Trimesh) -> bool:
    """True when the mesh lets what is behind it show: alpha blend or mask, or colour alpha."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        if material.alphaMode in ("BLEND", "MASK"):
            return True
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind is not None:
        colors = visual.vertex_colors if visual.kind == "vertex" else visual.face_colors
        return bool((np.asarray(colors)[:, 3] < 255).any())
    return False


# -- viewpoints ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Camera:
    """One view: the GL matrix, and what makes the same pixel centres into rays."""

    view_projection: np.ndarray
    """(4, 4) scene-centred world -> clip space."""
    axes: np.ndarray
    """(3, 3) rows: screen right, screen up, towards the viewer."""
    eye: np.ndarray | None
    """Scene-centred viewpoint of a perspective view; None for an orthographic one."""
    half: float
    """Orthographic views: half the frame's width in world units."""

    def rays(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(size², 3) float32 origins and directions through the pixel centres, row 0 at the
        bottom as GL reads framebuffers (made per view: 64 views at 512² would be 1 GB)."""
        grid = _pixel_grid(size)
        right, up, toward = self.axes
        if self.eye is None:
            frame = np.stack([right * self.half, up * self.half, toward * 2 * self.half])
            origins = grid @ frame.astype(np.float32)
            directions = np.empty_like(origins)
            directions[:] = -toward
        else:
            directions = grid @ np.stack([right, up, -toward]).astype(np.float32)
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            origins = np.empty_like(directions)
            origins[:] = self.eye
        return origins, directions


@functools.lru_cache(maxsize=4)
def _pixel_grid(size: int) -> np.ndarray:
    """(size², 3) float32 rows (u, v, 1): pixel centres in [-1, 1], row 0 at the bottom."""
    ticks = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    u, v = np.meshgrid(ticks, ticks)
    grid = np.stack([u.ravel(), v.ravel(), np.ones(size * size, np.float32)], axis=1)
    grid.setflags(write=False)
    return grid


def _frame(tm_scene: trimesh.Scene) -> tuple[np.ndarray, float]:
    """Centre of the world bounding box and the radius of a sphere holding it."""
    bounds = tm_scene.bounds
    centre = bounds.mean(axis=0)
    radius = float(np.linalg.norm(bounds[1] - bounds[0]) / 2)
    return centre, max(radius, 1e-9)


def fibonacci_directions(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (golden-angle spiral)."""
    index = np.arange(count) + 0.5
    z = 1 - 2 * index / count
    ring = np.sqrt(np.maximum(0.0, 1 - z * z))
    angle = np.pi * (3 - np.sqrt(5)) * index
    return np.stack([ring * np.cos(angle), ring * np.sin(angle), z], axis=1)


def _basis(toward: np.ndarray) -> np.ndarray:
    """Rows: screen right, screen up, ``toward`` (unit, pointing at the viewer)."""
    helper = np.array([0.0, 1.0, 0.0]) if abs(toward[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    right = np.cross(helper, toward)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(toward, right), toward])


def _cameras(options: RemoveHiddenOptions, centre: np.ndarray, radius: float) -> list[_Camera]:
    cameras = []
    # orthographic views framing the bounding sphere, from outside
    half = radius * 1.02
    for toward in fibonacci_directions(options.views):
        axes = _basis(toward)
        projection = np.zeros((4, 4))
        projection[0, :3] = axes[0] / half
        projection[1, :3] = axes[1] / half
        projection[2, :3] = -axes[2] / (2 * half)
        projection[3, 3] = 1.0
        cameras.append(_Camera(projection, axes, None, half))
    # cube maps from interior points: 90-degree perspective views along +-x, +-y, +-z
    near, far = radius * 1e-4, radius * 4
    for point in options.interior_points:
        eye = np.asarray(point, dtype=np.float64) - centre
        for toward in np.vstack([np.eye(3), -np.eye(3)]):
            axes = _basis(toward)
            view = np.eye(4)
            view[:3, :3] = axes
            view[:3, 3] = -axes @ eye
            perspective = np.zeros((4, 4))
            perspective[0, 0] = perspective[1, 1] = 1.0  # tan(45 deg) = 1
            perspective[2, 2] = -(far + near) / (far - near)
            perspective[2, 3] = -2 * far * near / (far - near)
            perspective[3, 2] = -1.0
            cameras.append(_Camera(perspective @ view, axes, eye, half))
    return cameras


# -- backends --------------------------------------------------------------------------


def _pick_backend(requested: str, triangles: int) -> str:
    if requested != "auto":
        return requested
    from tasks.steps import _gl

    try:
        import embreex  # noqa: F401
    except ImportError:
        return "gl"
    try:
        ctx = _gl.open_context()
    except RenderError:
        return "embree"
    try:
        on_gpu = _gl.describe(ctx)["device"] == "gpu"
    finally:
        ctx.release()
    return "gl" if on_gpu or triangles < EMBREE_FROM_TRIANGLES else "embree"


def _seen_gl(occluders, cameras: list[_Camera], options: RemoveHiddenOptions, centre) -> dict:
    """{placement number: seen triangle indices}, from OpenGL ID buffers."""
    from tasks.steps import _gl

    meshes = []
    for _, group in occluders:
        mesh = group[0].geometry
        # float32 keeps ~7 digits: vertices around their own centre, placements around the scene's
        local = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2
        inner = np.eye(4)
        inner[:3, 3] = local
        outer = np.eye(4)
        outer[:3, 3] = -centre
        transforms = np.stack([outer @ p.transform @ inner for p in group])
        meshes.append((mesh.vertices - local, mesh.faces, transforms))
    ctx = _gl.open_context()
    hits = []
    try:
        gpu = _gl.IdScene(ctx, meshes)
        for camera in cameras:
            ids = gpu.draw(camera.view_projection, options.precision).reshape(-1, 2)
            ids = ids[ids[:, 0] > 0].astype(np.int64)
            hits.append(_count((ids[:, 0] - 1) << 32 | ids[:, 1]))
        gpu.release()
    finally:
        ctx.release()
    return _seen(hits, options.min_pixels)


def _seen_embree(occluders, cameras: list[_Camera], options: RemoveHiddenOptions, centre) -> dict:
    """{placement number: seen triangle indices}, from one Embree ray per pixel."""
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError as exc:
        raise OptionsError(
            "remove_hidden: backend 'embree' needs the embreex package (pip install embreex)"
        ) from exc

    # 1. every placement baked into one triangle soup, scene-centred
    triangles, keys = [], []
    number = 0
    for _, group in occluders:
        mesh = group[0].geometry
        local = np.arange(len(mesh.faces), dtype=np.int64)
        for placement in group:
            world = trimesh.transform_points(mesh.vertices, placement.transform) - centre
            triangles.append(world[mesh.faces].astype(np.float32))
            keys.append(number << 32 | local)
            number += 1
    soup = np.concatenate(triangles)
    key = np.concatenate(keys)
    embree = rtcore_scene.EmbreeScene()
    TriangleMesh(scene=embree, vertices=soup)

    # 2. one ray per pixel centre of every view
    hits = []
    for camera in cameras:
        primitive = embree.run(*camera.rays(options.precision))
        hits.append(_count(key[primitive[primitive >= 0]]))
    return _seen(hits, options.min_pixels)


def _count(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(keys, return_counts=True)


def _seen(hits: list[tuple[np.ndarray, np.ndarray]], min_pixels: int) -> dict:
    keys = np.concatenate([k for k, _ in hits]) if hits else np.zeros(0, np.int64)
    counts = np.concatenate([c for _, c in hits]) if hits else np.zeros(0, np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    total = np.bincount(inverse, weights=counts, minlength=len(unique))
    unique = unique[total >= min_pixels]
    placement, triangle = unique >> 32, unique & 0xFFFFFFFF
    order = np.argsort(placement, kind="stable")
    placement, triangle = placement[order], triangle[order]
    starts = np.flatnonzero(np.r_[True, placement[1:] != placement[:-1]]) if len(placement) else []
    ends = list(starts[1:]) + [len(placement)] if len(placement) else []
    return {int(placement[s]): triangle[s:e] for s, e in zip(starts, ends, strict=True)}


# -- removal ---------------------------------------------------------------------------


def _remove(scene: Scene, occluders, seen: dict, level: str) -> list[str]:
    """Apply ``level``; return the names of the placed nodes that lost their geometry."""
    tm_scene = scene.trimesh_scene
    removed: list[str] = []
    dropped_geometry: list[str] = []
    number = 0
    for name, group in occluders:
        numbers = range(number, number + len(group))
        number += len(group)
        visible = [n in seen for n in numbers]
        if level == "mesh":
            if not any(visible):
                removed.extend(p.node for p in group)
                dropped_geometry.append(name)
            continue
        # part and triangle: a placement that shows nothing goes
        for placement, shown in zip(group, visible, strict=True):
            if not shown:
                _detach(tm_scene, placement.node)
                removed.append(placement.node)
        if not any(visible):
            dropped_geometry.append(name)
        elif level == "triangle":
            # a mesh keeps every triangle that one of its placements shows
            mesh = tm_scene.geometry[name]
            mask = np.zeros(len(mesh.faces), dtype=bool)
            for n in numbers:
                if n in seen:
                    mask[seen[n]] = True
            if not mask.all():
                tm_scene.geometry[name] = _keep_faces(mesh, mask)
    if dropped_geometry:
        tm_scene.delete_geometry(dropped_geometry)
    _prune_empty(tm_scene, removed)
    return removed


def _prune_empty(tm_scene: trimesh.Scene, nodes: list[str]) -> None:
    """Delete the emptied nodes that have no children, then the parents that this empties:
    a removed part leaves no node behind (an assembly node keeps its other parts)."""
    forest = tm_scene.graph.transforms
    base = tm_scene.graph.base_frame
    candidates = set(nodes)
    while candidates:
        parents_of = set(forest.parents.values())
        gone = {
            node
            for node in candidates
            if node != base
            and node in forest.node_data
            and node not in parents_of
            and "geometry" not in forest.node_data[node]
        }
        if not gone:
            break
        candidates = {forest.parents[node] for node in gone if node in forest.parents}
        for edge in [edge for edge in forest.edge_data if edge[1] in gone]:
            del forest.edge_data[edge]
        for node in gone:
            forest.parents.pop(node, None)
            forest.node_data.pop(node, None)
    forest._cache = {}
    forest._hash = None
    tm_scene.graph._cache.clear()


def _detach(tm_scene: trimesh.Scene, node: str) -> None:
    """Take the geometry off one node, keeping the node (its children stay placed)."""
    graph = tm_scene.graph
    graph.transforms.node_data[node].pop("geometry", None)
    parent = graph.transforms.parents.get(node)
    if parent is not None:
        graph.transforms.edge_data.get((parent, node), {}).pop("geometry", None)
    graph.transforms._hash = None
    graph._cache.clear()


def _keep_faces(mesh: trimesh.Trimesh, mask: np.ndarray) -> trimesh.Trimesh:
    """A copy of ``mesh`` with only the faces in ``mask``, and what their vertices carried."""
    kept, faces = np.unique(mesh.faces[mask], return_inverse=True)
    visual = mesh.visual
    face_colors = None
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "face":
        face_colors = np.asarray(visual.face_colors)[mask]
    return keep_vertices(mesh, kept, faces, face_colors=face_colors)
