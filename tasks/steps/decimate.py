"""Decimate meshes: fewer triangles, same look, by edge collapse with meshoptimizer.

Reduces each mesh to a share of its triangles, to a triangle budget for the
whole scene, or as far as a geometric error allows. Collapses follow the
quadric error metric and never cross a UV seam, a hard-normal edge or a
material border: meshoptimizer sees vertices that share a position but differ
in UV or normal as a seam and only slides them along it, so textures stay in
place. Carried vertex normals and colours also weigh in the error, as in
gltfpack. A ``preview`` mode trades all of that for speed.

Shaped after gltf-transform's ``simplify()`` (weld, then meshoptimizer per
mesh, then compact), with the scene-wide budget of PiXYZ's ``decimateTarget``.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import trimesh

from tasks.steps._meshes import (
    given_vertex_normals,
    is_mesh,
    keep_vertices,
    max_scale,
    placements,
    scene_diagonal,
    vertex_colors,
    vertex_uv,
)
from tasks.steps.errors import OptionsError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecimateOptions:
    """How far to decimate, and what to protect."""

    ratio: float | None = None
    """Share of each mesh's triangles to keep, in (0, 1]. Default: None, which means 0.5
    unless ``triangles`` or ``max_error`` is set."""

    triangles: int | None = None
    """Triangle budget for the whole scene (placed instances counted), shared among meshes
    in proportion to their triangles; instead of ``ratio``. Default: None."""

    max_error: float | None = None
    """Deviation allowed, as a fraction of the scene's bounding-box diagonal. Alone, meshes
    are simplified as far as it allows; with a count, whichever limit comes first stops.
    It is meshoptimizer's quadric estimate, not a bound: the measured Hausdorff distance
    ran 1.5-5x higher on the test meshes. Default: None (no limit)."""

    lock_border: bool = False
    """Keep open-border vertices in place, so meshes meeting along a border (terrain tiles,
    CAD faces split into meshes) stay crack-free. Default: False."""

    preview: bool = False
    """Cluster vertices on a grid instead (meshoptimizer's sloppy mode): ~10x faster, but
    merges nearby parts, ignores seams (UVs smear) and ``lock_border``. Default: False."""

    normal_weight: float = 0.5
    """Weight of carried vertex normals in the error, against position (1 = as much).
    Default: 0.5, gltfpack's; 0 ignores them (a little faster)."""


DECIMATE_DEFAULTS = DecimateOptions()

FAN_OUT_FROM_TRIANGLES = 500_000
"""`decimate` spreads its meshes over workers (`FanOut`) from this many triangles (of
distinct meshes) up, and decimates them in its own task below. Measured with
``bench/fanout.py`` on 2 shared CPU cores (load ≈ 2), 200 distinct meshes with normals to
50 %, one task vs one batch in the job's task + one child task (warm workers): 64k
triangles 0.08 / 0.08 s, 256k 0.33 / 0.26 s, 512k 0.51 / 0.37 s, 1M 0.79 / 0.60 s; on 2
free cores (from CPU times) 1.2×, 1.4×, 1.6×, 1.3-1.6×. Batches cost ~10 ms with warm
workers, but a child that has to start a worker costs seconds, and below this size the
gain is under 0.15 s. Under a load of ~10 on the same cores fan-out lost at every size up
to 1.5M (Ray counts its own work as busy CPUs, not others')."""


@dataclass(frozen=True)
class FanOut:
    """Where `decimate` may send batches of meshes: child tasks of a job, for big scenes."""

    map: Callable[[Callable, list], list]
    """``map(fn, batches)`` returns ``[fn(batch) for batch in batches]``, in order, computed
    elsewhere (a job passes its child tasks: `tasks.subtasks.SubTasks.map`)."""

    workers: int = 1
    """Batches to cut, one per CPU free to take one; below 2, no fan-out. Default 1."""

    from_triangles: int = FAN_OUT_FROM_TRIANGLES
    """Fan out only from this many triangles (distinct meshes, as decimated); below, one
    task is faster. Default: `FAN_OUT_FROM_TRIANGLES`."""


_DEFAULT_RATIO = 0.5
_NO_LIMIT = 1.0
"""Top of meshoptimizer's relative error range [0, 1]: the triangle count decides alone."""

_LOCK_BORDER = 1 << 0
_ERROR_ABSOLUTE = 1 << 2


def decimate(
    scene: Scene, options: DecimateOptions | None = None, fan_out: FanOut | None = None
) -> Scene:
    """Decimate every mesh of ``scene`` in place to ``ratio``, ``triangles`` or ``max_error``.

    A mesh placed several times is decimated once (its instances follow);
    ``triangles`` counts every placement, as a viewer draws them. Texture
    coordinates, carried normals and vertex colours of the kept vertices are
    kept as they were.

    Settings: ``DecimateOptions(ratio=0.1)`` keeps a tenth of every mesh
    (LODs); ``DecimateOptions(triangles=100_000)`` fits a scene to a budget;
    ``DecimateOptions(max_error=1e-3)`` removes detail below about 1/1000 of
    the model's size (a 1 m part: 1 mm, as meshoptimizer estimates it; see
    ``max_error``). Add ``preview=True`` for a quick look at a huge scan in a
    tenth of the time.

    Run `repair` first on triangle soups (STL, scans): split vertices turn
    every edge into a seam, and seams barely decimate. Point clouds and paths
    are skipped with a warning.

    ``fan_out``: a big assembly (from ``fan_out.from_triangles``) is cut into
    ``fan_out.workers`` batches of whole meshes, balanced by triangles, which
    ``fan_out.map`` decimates elsewhere; the result is the same mesh for mesh.

    Reference: Garland & Heckbert, "Surface simplification using quadric
    error metrics", SIGGRAPH 1997; Kapoulkine, meshoptimizer (simplifier).
    """
    options = options or DECIMATE_DEFAULTS
    _check(options)

    # 1. The meshes, their placements and the budget
    meshes: dict[str, trimesh.Trimesh] = {}
    scales: dict[str, float] = {}
    skipped = 0
    for placement in placements(scene.trimesh_scene):
        if not is_mesh(placement.geometry):
            skipped += 1
            continue
        meshes[placement.geometry_name] = placement.geometry
        scale = max_scale(placement.transform)
        scales[placement.geometry_name] = max(scales.get(placement.geometry_name, 0.0), scale)
    before = scene.triangle_count
    ratio = _target_ratio(options, before)
    max_error = None
    if options.max_error is not None:
        max_error = options.max_error * scene_diagonal(scene.trimesh_scene)
    if ratio >= 1.0 and max_error is None:
        logger.debug("decimate: nothing to do (%d triangles, ratio %.3f)", before, ratio)
        return scene

    # 2. Decimate each mesh once (instances share the result), in batches if it pays
    notes = _Notes()
    work = (
        # an instance scaled up shows the error scaled up: tighten the limit for it
        _prepare(mesh, None if max_error is None else max_error / max(scales[name], 1e-30), notes)
        for name, mesh in meshes.items()
    )
    distinct = sum(len(mesh.faces) for mesh in meshes.values())
    workers = 1 if fan_out is None else min(fan_out.workers, len(meshes))
    if workers >= 2 and distinct >= fan_out.from_triangles:
        work = list(work)
        done = zip(work, _in_batches(work, workers, ratio, options, fan_out.map), strict=True)
    else:  # one mesh at a time, so that only one mesh's arrays are made at once
        done = ((one, _simplify(one, ratio, options)) for one in work)
    for (name, mesh), (prepared, kept) in zip(meshes.items(), done, strict=True):
        if kept is not None:
            # the kept vertices, with everything they carried
            origin, faces = kept
            scene.trimesh_scene.geometry[name] = keep_vertices(
                mesh, origin, faces, colors=prepared.colors
            )

    # 3. Say what was left alone or approximated
    if skipped:
        scene.warn(f"decimate: skipped {skipped} placed geometries that are not triangle meshes")
    if notes.face_colors:
        scene.warn(
            f"decimate: {notes.face_colors} meshes had per-face colours; "
            "they were blended into vertex colours"
        )
    if notes.face_attributes:
        scene.warn(f"decimate: dropped per-face attributes of {notes.face_attributes} meshes")
    logger.debug(
        "decimate: %d meshes, triangles %d -> %d (ratio %.3f, max error %s)",
        len(meshes),
        before,
        scene.triangle_count,
        ratio,
        max_error,
    )
    return scene


@dataclass
class _Notes:
    """Counts of approximations made, for the scene's warnings."""

    face_colors: int = 0
    face_attributes: int = 0


@dataclass(frozen=True)
class _Mesh:
    """What simplifying one mesh reads, as plain arrays (a child task gets these, not the mesh)."""

    positions: np.ndarray
    """(n, 3) float32."""
    indices: np.ndarray
    """(3m,) uint32, the faces flattened."""
    attributes: list[np.ndarray] = field(default_factory=list)
    """float32 UVs, normals and colours that vertices must share to be welded."""
    normals: np.ndarray | None = None
    """(n, 3) float32 carried normals, weighed in the error."""
    colors: np.ndarray | None = None
    """(n, 4) uint8 vertex colours (per-face ones blended), weighed in the error and kept."""
    max_error: float | None = None
    """Deviation allowed, in the mesh's own units; None: no limit."""

    @property
    def triangles(self) -> int:
        return len(self.indices) // 3


@dataclass(frozen=True)
class _Batch:
    """Meshes that one task simplifies, with the settings they share."""

    meshes: list[_Mesh]
    ratio: float
    options: DecimateOptions


def _prepare(mesh: trimesh.Trimesh, max_error: float | None, notes: _Notes) -> _Mesh:
    """Gather what a vertex carries; per-face colours become per-vertex ones."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "face":
        visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=visual.vertex_colors)
        notes.face_colors += 1
    if mesh.face_attributes:
        notes.face_attributes += 1
    uv = vertex_uv(mesh)
    normals = given_vertex_normals(mesh)
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32)
    colors = vertex_colors(mesh) if visual is mesh.visual else np.asarray(visual.vertex_colors)
    return _Mesh(
        positions=np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        indices=np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel(),
        attributes=[
            np.asarray(a, dtype=np.float32) for a in (uv, normals, colors) if a is not None
        ],
        normals=normals,
        colors=colors,
        max_error=max_error,
    )


def _in_batches(
    meshes: list[_Mesh], workers: int, ratio: float, options: DecimateOptions, mapper: Callable
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """`_simplify` of every mesh, in ``workers`` batches balanced by triangles, by ``mapper``."""
    groups = _balance([mesh.triangles for mesh in meshes], workers)
    batches = [_Batch([meshes[i] for i in group], ratio, options) for group in groups]
    logger.debug(
        "decimate: %d meshes in %d batches of %s triangles",
        len(meshes),
        len(batches),
        [sum(mesh.triangles for mesh in batch.meshes) for batch in batches],
    )
    results: list = [None] * len(meshes)
    for group, kept in zip(groups, mapper(simplify_batch, batches), strict=True):
        for index, one in zip(group, kept, strict=True):
            results[index] = one
    return results


def simplify_batch(batch: _Batch) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per mesh of ``batch``: (kept vertices, new faces), see `_simplify`.

    A plain module-level function of a picklable argument, so a process can send it to
    Ray as one child task per batch (through `FanOut`).
    """
    return [_simplify(mesh, batch.ratio, batch.options) for mesh in batch.meshes]


def _balance(triangles: list[int], workers: int) -> list[list[int]]:
    """Mesh indices in ``workers`` groups of about equal triangles (largest first, each to
    the lightest group), each group in mesh order; no group is empty."""
    loads = [(0, group) for group in range(workers)]
    groups: list[list[int]] = [[] for _ in range(workers)]
    for index in sorted(range(len(triangles)), key=lambda i: -triangles[i]):
        load, group = heapq.heappop(loads)
        groups[group].append(index)
        heapq.heappush(loads, (load + triangles[index], group))
    return [sorted(group) for group in groups if group]


def _simplify(
    mesh: _Mesh, ratio: float, options: DecimateOptions
) -> tuple[np.ndarray, np.ndarray] | None:
    """Decimate one mesh to ``ratio`` of its faces within ``mesh.max_error``: the indices
    of the input vertices kept, and the new faces as indices into those; None when nothing
    would be left (a mesh this small is all border or all seam: keep it as it is)."""
    import meshoptimizer

    # 1. Weld exact copies (position and every attribute), which would otherwise be seams
    positions = mesh.positions
    parts = [positions, *mesh.attributes]
    key = np.ascontiguousarray(np.hstack(parts)) if len(parts) > 1 else positions
    indices = mesh.indices
    remap = np.empty(len(positions), dtype=np.uint32)
    unique = meshoptimizer.generate_vertex_remap(remap, indices, vertices=key)
    source = np.zeros(unique, dtype=np.int64)
    source[remap[indices]] = indices
    indices = remap[indices]
    positions = np.ascontiguousarray(positions[source])

    # 2. Simplify the index buffer
    max_error = mesh.max_error
    target = int(len(indices) // 3 * ratio) * 3
    destination = np.empty(len(indices), dtype=np.uint32)
    error = _NO_LIMIT if max_error is None else max_error
    flags = 0 if max_error is None else _ERROR_ABSOLUTE
    if options.preview:
        if max_error is not None:
            # sloppy mode has no absolute flag: express the limit relative to the extents
            error = max_error / meshoptimizer.simplify_scale(positions)
        count = meshoptimizer.simplify_sloppy(
            destination, indices, positions, target_index_count=target, target_error=error
        )
    else:
        flags |= _LOCK_BORDER if options.lock_border else 0
        colors = mesh.colors
        weighted = [
            (mesh.normals, options.normal_weight),
            (None if colors is None else colors / 255, 1),
        ]
        weighted = [(a[source], w) for a, w in weighted if a is not None and w > 0]
        if weighted:
            count = _simplify_with_attributes(
                destination, indices, positions, weighted, target, error, flags
            )
        else:
            count = meshoptimizer.simplify(
                destination,
                indices,
                positions,
                target_index_count=target,
                target_error=error,
                options=flags,
            )
    if count == 0:
        return None

    # 3. Compact: the vertices kept, as indices into the input's
    kept, faces = np.unique(destination[:count], return_inverse=True)
    return source[kept], faces.reshape(-1, 3)


def _check(options: DecimateOptions) -> None:
    if options.ratio is not None and options.triangles is not None:
        raise OptionsError("decimate: set either ratio or triangles, not both")
    if options.ratio is not None and not 0 < options.ratio <= 1:
        raise OptionsError(f"decimate: ratio must be in (0, 1], got {options.ratio}")
    if options.triangles is not None and options.triangles < 1:
        raise OptionsError(f"decimate: triangles must be at least 1, got {options.triangles}")
    if options.max_error is not None and not options.max_error >= 0:
        raise OptionsError(f"decimate: max_error must be >= 0, got {options.max_error}")
    if options.normal_weight < 0:
        raise OptionsError(f"decimate: normal_weight must be >= 0, got {options.normal_weight}")


def _target_ratio(options: DecimateOptions, triangles: int) -> float:
    """Share of triangles to keep in every mesh."""
    if options.triangles is not None:
        return min(1.0, options.triangles / max(triangles, 1))
    if options.ratio is not None:
        return options.ratio
    return 0.0 if options.max_error is not None else _DEFAULT_RATIO


def _simplify_with_attributes(
    destination: np.ndarray,
    indices: np.ndarray,
    positions: np.ndarray,
    weighted: list[tuple[np.ndarray, float]],
    target: int,
    error: float,
    flags: int,
) -> int:
    """meshopt_simplifyWithAttributes, called through ctypes with its real signature.

    The ``meshoptimizer`` 0.2.30a0 wrapper declares no argument types for this
    function, so ctypes would pass the float error as a double; this binds it
    on a private handle to the same library.
    """
    attributes = np.ascontiguousarray(np.hstack([a for a, _ in weighted]), dtype=np.float32)
    weights = np.concatenate([np.full(a.shape[1], w) for a, w in weighted]).astype(np.float32)
    function = _with_attributes()
    return function(
        destination.ctypes.data_as(ctypes.POINTER(ctypes.c_uint)),
        indices.ctypes.data_as(ctypes.POINTER(ctypes.c_uint)),
        len(indices),
        positions.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        len(positions),
        positions.strides[0],
        attributes.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        attributes.strides[0],
        weights.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        len(weights),
        None,
        target,
        error,
        flags,
        None,
    )


_WITH_ATTRIBUTES = []


def _with_attributes():
    if not _WITH_ATTRIBUTES:
        from meshoptimizer import _loader

        function = ctypes.CDLL(_loader.lib._name).meshopt_simplifyWithAttributes
        function.restype = ctypes.c_size_t
        function.argtypes = [
            ctypes.POINTER(ctypes.c_uint),  # destination
            ctypes.POINTER(ctypes.c_uint),  # indices
            ctypes.c_size_t,  # index_count
            ctypes.POINTER(ctypes.c_float),  # vertex_positions
            ctypes.c_size_t,  # vertex_count
            ctypes.c_size_t,  # vertex_positions_stride
            ctypes.POINTER(ctypes.c_float),  # vertex_attributes
            ctypes.c_size_t,  # vertex_attributes_stride
            ctypes.POINTER(ctypes.c_float),  # attribute_weights
            ctypes.c_size_t,  # attribute_count
            ctypes.POINTER(ctypes.c_ubyte),  # vertex_lock
            ctypes.c_size_t,  # target_index_count
            ctypes.c_float,  # target_error
            ctypes.c_uint,  # options
            ctypes.POINTER(ctypes.c_float),  # result_error
        ]
        _WITH_ATTRIBUTES.append(function)
    return _WITH_ATTRIBUTES[0]
