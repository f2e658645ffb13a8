"""Repair meshes: weld split vertices, drop broken faces, orient faces, close small holes.

Scanned, exported and hand-made meshes arrive as triangle soups with cracks,
duplicate or zero-area triangles, faces wound the wrong way and small holes;
viewers show black faces, and slicers, booleans and volume measures fail.
This step makes each mesh a consistently oriented surface and, where the holes
are small, a closed one, without moving any vertex and without losing UV
seams, hard normals or vertex colours.

Topology is judged on positions (see `_meshes`): a vertex split only to carry
a second UV or normal still joins the faces on both sides, so a textured model
whose seams are the only "cracks" is already closed and is left as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from trimesh.grouping import hashable_rows

from tasks.steps._meshes import (
    edge_use_counts,
    given_vertex_normals,
    is_mesh,
    vertex_colors,
    vertex_uv,
)
from tasks.steps.errors import OptionsError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairOptions:
    """What the repair may change."""

    weld_tolerance: float = 1e-6
    """Vertices closer than this fraction of the mesh's bounding-box diagonal are one
    position. Default: 1e-6 (joins float round-off; 0 joins exact copies only)."""

    attribute_tolerance: float = 1e-4
    """Welded vertices must also agree within this on UV, normal and colour (0..1 units),
    so UV seams and hard edges stay split. Default: 1e-4."""

    drop_degenerate: bool = True
    """Remove faces with a repeated vertex or zero area. Default: True."""

    drop_duplicates: bool = True
    """Remove faces that repeat another face's three vertices (either winding). Default: True."""

    fix_winding: bool = True
    """Flip faces so neighbours agree and closed bodies face outward. Default: True."""

    fill_holes: bool = True
    """Close holes of at most ``max_hole_edges`` edges with new faces (pymeshfix). Default: True."""

    max_hole_edges: int = 100
    """Largest hole filled, in boundary edges; 0: any number. Default: 100."""

    max_hole_area: float = 0.75
    """A part's holes are filled only if the patches' area is at most this fraction of the
    part's own area: the opening of a glass pane, a frame or a shell is larger, and was
    meant to be open. Default: 0.75 (a hemisphere's cap is 0.5); a large value fills all."""


REPAIR_DEFAULTS = RepairOptions()


@dataclass
class RepairReport:
    """Before/after counts of one mesh; edges are counted on positions."""

    vertices_before: int = 0
    vertices_after: int = 0
    faces_before: int = 0
    faces_after: int = 0
    boundary_edges_before: int = 0
    boundary_edges_after: int = 0
    non_manifold_edges_before: int = 0
    non_manifold_edges_after: int = 0
    degenerate_faces: int = 0
    """Faces dropped for a repeated vertex or zero area."""
    duplicate_faces: int = 0
    """Faces dropped as copies of another face."""
    flipped_faces: int = 0
    """Faces whose winding ends up reversed."""
    filled_holes: int = 0
    added_faces: int = 0
    """Faces added to close holes."""
    fill_failed: int = 0
    """1 when MeshFix's result could not be matched back to the mesh; its holes stay open."""

    @property
    def watertight(self) -> bool:
        """Every edge now joins exactly two faces."""
        return self.boundary_edges_after == 0 and self.non_manifold_edges_after == 0


def repair(scene: Scene, options: RepairOptions | None = None) -> Scene:
    """Repair every mesh of ``scene`` in place: weld, clean faces, orient, fill small holes.

    Stages, per mesh (a mesh placed twice is repaired once):

    1. weld vertices closer than ``weld_tolerance`` x its diagonal whose UV, normal
       and colour also agree; split seams stay split;
    2. drop degenerate and duplicate faces;
    3. fill holes of up to ``max_hole_edges`` edges with pymeshfix (MeshFix), which
       triangulates each hole from its rim vertices, so no vertex is added and
       the new faces reuse existing UVs; parts without holes are not touched,
       nor parts whose patches would outweigh them (``max_hole_area``: a pane);
    4. orient faces consistently across each connected part, choosing the side
       most faces already had, then turn closed parts outward (positive volume);
    5. negate carried vertex normals that now point against their faces.

    Settings: the defaults suit scans, STL and exported game/CAD meshes;
    ``RepairOptions(fill_holes=False)`` only cleans and orients (surfaces that
    are meant to be open); ``RepairOptions(max_hole_edges=0, max_hole_area=1e9)``
    closes every hole, even a sheet's outline, for 3D printing or volumes.

    Run it first: after loading, before `decimate` (which needs welded input)
    and before `metadata` if the volume matters. Point clouds and paths are
    skipped with a warning.

    Reference: Attene, "A lightweight approach to repairing digitized polygon
    meshes", The Visual Computer 26 (2010) -- the MeshFix algorithm.
    """
    options = options or REPAIR_DEFAULTS
    _check(options)

    # 1. Repair each distinct mesh once
    skipped = 0
    totals = RepairReport()
    for name, geometry in list(scene.trimesh_scene.geometry.items()):
        if not is_mesh(geometry):
            skipped += 1
            continue
        report = repair_mesh(geometry, options)
        logger.debug("repair %s: %s", name, report)
        for key, value in vars(report).items():
            setattr(totals, key, getattr(totals, key) + value)

    # 2. Say what was left alone
    if skipped:
        scene.warn(f"repair: skipped {skipped} geometries that are not triangle meshes")
    if totals.fill_failed:
        scene.warn(f"repair: could not fill the holes of {totals.fill_failed} meshes")
    logger.debug(
        "repair: faces %d -> %d, boundary edges %d -> %d, non-manifold edges %d -> %d, "
        "%d holes filled, %d faces flipped",
        totals.faces_before,
        totals.faces_after,
        totals.boundary_edges_before,
        totals.boundary_edges_after,
        totals.non_manifold_edges_before,
        totals.non_manifold_edges_after,
        totals.filled_holes,
        totals.flipped_faces,
    )
    return scene


def repair_mesh(mesh: trimesh.Trimesh, options: RepairOptions | None = None) -> RepairReport:
    """Repair one mesh in place (the stages of `repair`) and return its before/after counts."""
    options = options or REPAIR_DEFAULTS
    _check(options)
    report = RepairReport(vertices_before=len(mesh.vertices), faces_before=len(mesh.faces))
    normals = given_vertex_normals(mesh)

    # 1. Weld: positions within tolerance, attributes equal -> one vertex
    position, weld_group, keep = _weld(mesh, options, normals)
    if len(keep) < len(mesh.vertices):
        mesh.update_vertices(keep, weld_group)
        normals = None if normals is None else normals[keep]
    position = position[keep]
    counts_before = _edge_counts(position[mesh.faces])
    report.boundary_edges_before = int((counts_before == 1).sum())
    report.non_manifold_edges_before = int((counts_before > 2).sum())

    # 2. Drop degenerate and duplicate faces
    keep_faces = np.ones(len(mesh.faces), dtype=bool)
    if options.drop_degenerate:
        degenerate = _degenerate(mesh, position, options)
        report.degenerate_faces = int(degenerate.sum())
        keep_faces &= ~degenerate
    if options.drop_duplicates:
        duplicate = _duplicates(position[mesh.faces]) & keep_faces
        report.duplicate_faces = int(duplicate.sum())
        keep_faces &= ~duplicate
    if not keep_faces.all():
        mesh.update_faces(keep_faces)

    # 3. Close small holes in the parts that have them
    reversed_ = np.zeros(len(mesh.faces), dtype=bool)
    if options.fill_holes:
        reversed_ = _fill_holes(mesh, position, options, report)

    # 4. Orient faces consistently, closed parts outward
    if options.fix_winding:
        reversed_ ^= _fix_winding(mesh, position)
    report.flipped_faces = int(reversed_.sum())

    # 5. Carried normals follow the faces
    if normals is not None:
        mesh.vertex_normals = _follow_faces(mesh, position, normals)

    counts_after = _edge_counts(position[mesh.faces])
    report.boundary_edges_after = int((counts_after == 1).sum())
    report.non_manifold_edges_after = int((counts_after > 2).sum())
    report.vertices_after = len(mesh.vertices)
    report.faces_after = len(mesh.faces)
    return report


def _check(options: RepairOptions) -> None:
    if not 0 <= options.weld_tolerance < 1:
        raise OptionsError(f"weld_tolerance must be in [0, 1), got {options.weld_tolerance}")
    if options.attribute_tolerance < 0:
        raise OptionsError(f"attribute_tolerance must be >= 0, got {options.attribute_tolerance}")
    if options.max_hole_area < 0:
        raise OptionsError(f"max_hole_area must be >= 0, got {options.max_hole_area}")
    if options.max_hole_edges < 0:
        raise OptionsError(f"max_hole_edges must be >= 0, got {options.max_hole_edges}")


def _weld(
    mesh: trimesh.Trimesh, options: RepairOptions, normals: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vertex: position id and weld-group id; and the first vertex of each weld group.

    Weld groups are numbered in the order of their first vertex, so a group id is
    also the welded vertex's new index, and they nest in position groups.
    """
    vertices = mesh.vertices
    diagonal = float(np.linalg.norm(np.ptp(vertices, axis=0)))
    tolerance = options.weld_tolerance * diagonal
    if tolerance > 0:
        pairs = cKDTree(vertices).query_pairs(tolerance, output_type="ndarray")
    else:
        pairs = _exact_pairs(vertices)

    # the attributes a weld must not mix
    attributes = [a for a in (vertex_uv(mesh), normals) if a is not None]
    colors = vertex_colors(mesh)
    if colors is not None:
        attributes.append(colors / 255.0)
    same = np.ones(len(pairs), dtype=bool)
    for values in attributes:
        gap = np.abs(values[pairs[:, 0]] - values[pairs[:, 1]]).max(axis=1)
        same &= gap <= options.attribute_tolerance

    weld_group = _components(pairs[same], len(vertices))
    return _components(pairs, len(vertices)), weld_group, _group_first(weld_group)


def _exact_pairs(vertices: np.ndarray) -> np.ndarray:
    """Pairs (first, other) of vertices at exactly the same position."""
    _, inverse = np.unique(vertices, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    first = _group_first(inverse)
    others = np.flatnonzero(first[inverse] != np.arange(len(vertices)))
    return np.column_stack([first[inverse[others]], others])


def _components(pairs: np.ndarray, count: int) -> np.ndarray:
    """Connected-component label per vertex, labels numbered by their lowest vertex."""
    if len(pairs) == 0:
        return np.arange(count)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), (count,) * 2
    )
    _, labels = connected_components(graph, directed=False)
    return labels


def _group_first(labels: np.ndarray) -> np.ndarray:
    """Index of the first vertex of each label, in label order."""
    _, first = np.unique(labels, return_index=True)
    return first


def _edge_counts(faces: np.ndarray) -> np.ndarray:
    return edge_use_counts(faces)[1]


def _degenerate(mesh: trimesh.Trimesh, position: np.ndarray, options: RepairOptions) -> np.ndarray:
    """Faces with two corners at one position, or with an area below the weld tolerance squared."""
    faces = position[mesh.faces]
    repeated = (
        (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    )
    diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    tolerance = options.weld_tolerance * diagonal
    return repeated | (mesh.area_faces <= 0.5 * tolerance**2)


def _duplicates(faces: np.ndarray) -> np.ndarray:
    """True for every face whose vertex set appeared on an earlier face."""
    keys = hashable_rows(np.sort(faces, axis=1))
    _, first = np.unique(keys, return_index=True)
    duplicate = np.ones(len(faces), dtype=bool)
    duplicate[first] = False
    return duplicate


def _fill_holes(
    mesh: trimesh.Trimesh, position: np.ndarray, options: RepairOptions, report: RepairReport
) -> np.ndarray:
    """Close the small holes of the parts that have any, counting into ``report``.

    Returns, per resulting face, whether its winding is the reverse of its source face's.

    MeshFix works on positions (one vertex per position, seams joined) and may
    reorder or split vertices, so its output is matched back by position. Each
    of its faces then takes the mesh's own vertices: a face it kept takes its
    original corners (UV seams survive), a new face any vertex at each position.
    """
    from pymeshfix import _meshfix

    # 1. Faces of the parts that have a boundary
    faces = position[mesh.faces]
    edges, counts = edge_use_counts(faces)
    rim = np.unique(edges[counts == 1])
    unchanged = np.zeros(len(faces), dtype=bool)
    if len(rim) == 0:
        return unchanged
    pairs = np.sort(faces[:, [0, 1, 1, 2]].reshape(-1, 2), axis=1)
    part = _components(pairs, position.max() + 1)
    selected = np.flatnonzero(np.isin(part[faces[:, 0]], part[rim]))

    # 2. MeshFix on those parts, one vertex per position, no vertex added (no refinement)
    local_ids, local_faces = np.unique(faces[selected], return_inverse=True)
    local_faces = local_faces.reshape(-1, 3)
    first_vertex = _group_first(position)
    points = mesh.vertices[first_vertex[local_ids]]
    fixer = _meshfix.PyTMesh()
    fixer.set_quiet(1)
    fixer.load_array(points.astype(np.float64), local_faces.astype(np.int32))
    filled = fixer.fill_small_boundaries(options.max_hole_edges, False)
    out_points, out_faces = fixer.return_arrays()
    distance, found = cKDTree(points).query(out_points)
    if (distance > 0).any():
        report.fill_failed = 1
        return unchanged
    out_faces = found[out_faces]
    if filled == 0 and len(out_faces) == len(local_faces):
        return unchanged

    # 3. Map its faces back to the mesh's vertices and face data
    match = _match_faces(out_faces, local_faces)
    kept = match >= 0
    original = selected[np.maximum(match, 0)]
    which = np.empty((len(out_faces), 3), dtype=np.int64)
    for k in range(3):
        # which corner of the original face sits at this position
        which[:, k] = np.argmax(local_faces[np.maximum(match, 0)] == out_faces[:, k, None], axis=1)
    corners = mesh.faces[original[:, None], which]
    new_positions = local_ids[out_faces[~kept]]
    corners[~kept] = first_vertex[new_positions]
    # a new face borrows the face data (colour, attributes) of a face at its first corner
    touching = np.empty(position.max() + 1, dtype=np.int64)
    touching[faces[selected].ravel()] = np.repeat(selected, 3)
    original[~kept] = touching[new_positions[:, 0]]

    # 4. A part whose patches outweigh it was open on purpose (a pane, a frame): leave it
    selected_part = part[faces[selected, 0]]
    part_area = np.bincount(selected_part, mesh.area_faces[selected], minlength=len(part))
    out_part = part[local_ids[out_faces[:, 0]]]
    patch_area = trimesh.triangles.area(points[out_faces]) * ~kept
    patch = np.bincount(out_part, patch_area, minlength=len(part))
    closes = patch <= options.max_hole_area * part_area
    accepted = closes[out_part]
    untouched = np.union1d(
        np.setdiff1d(np.arange(len(faces)), selected), selected[~closes[selected_part]]
    )
    original, corners, kept, which = (a[accepted] for a in (original, corners, kept, which))

    loops_before = _boundary_loops(faces)
    mesh.update_faces(np.concatenate([untouched, original]))
    mesh.faces = np.concatenate([mesh.faces[: len(untouched)], corners])
    report.filled_holes = loops_before - _boundary_loops(position[mesh.faces])
    report.added_faces = int((~kept).sum())
    # MeshFix orients what it touches; an odd corner order is a flip
    reversed_ = kept & ((which[:, 1] - which[:, 0]) % 3 != 1)
    return np.concatenate([np.zeros(len(untouched), dtype=bool), reversed_])


def _boundary_loops(faces: np.ndarray) -> int:
    """Number of connected rims (chains of boundary edges)."""
    edges, counts = edge_use_counts(faces)
    rims = edges[counts == 1]
    if len(rims) == 0:
        return 0
    labels = _components(rims, int(rims.max()) + 1)
    return len(np.unique(labels[rims.ravel()]))


def _match_faces(faces: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Index into ``reference`` of the face with the same three vertices, or -1."""
    # hashed together: hashable_rows' packing depends on the largest id
    both = hashable_rows(np.sort(np.vstack([faces, reference]), axis=1))
    keys, reference_keys = both[: len(faces)], both[len(faces) :]
    order = np.argsort(reference_keys)
    slot = np.clip(np.searchsorted(reference_keys[order], keys), 0, len(order) - 1)
    found = reference_keys[order][slot] == keys
    return np.where(found, order[slot], -1)


def _fix_winding(mesh: trimesh.Trimesh, position: np.ndarray) -> np.ndarray:
    """Flip faces so that neighbours agree, then turn closed parts outward; returns the flips.

    Two faces across a manifold edge agree when they run the edge in opposite
    directions. That is a parity constraint per edge; solving it on the doubled
    graph (node 2f = face f as is, 2f+1 = face f flipped) is one connected-
    components pass instead of a breadth-first walk over faces in Python.
    """
    faces = position[mesh.faces]
    count = len(faces)
    if count == 0:
        return np.zeros(0, dtype=bool)

    # 1. Manifold edges and whether their two faces run them the same way
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    keys = hashable_rows(np.sort(directed, axis=1))
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    pair_starts = starts[sizes == 2]
    a, b = order[pair_starts], order[pair_starts + 1]
    same_way = (directed[a] == directed[b]).all(axis=1)
    fa, fb = a // 3, b // 3

    # 2. Parity on the doubled graph: agreeing faces link as-is to as-is
    cross = same_way.astype(np.int64)
    rows = np.concatenate([2 * fa, 2 * fa + 1])
    cols = np.concatenate([2 * fb + cross, 2 * fb + 1 - cross])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), (2 * count,) * 2)
    _, labels = connected_components(graph, directed=False)
    as_is, flipped = labels[0::2], labels[1::2]
    part = np.minimum(as_is, flipped)
    flip = as_is > flipped  # equal labels: a non-orientable part, left as it is

    # 3. Per part, keep the side most faces already had
    part_size = np.bincount(part, minlength=2 * count)
    part_flips = np.bincount(part, weights=flip, minlength=2 * count)
    flip ^= (part_flips > part_size / 2)[part] & (as_is != flipped)

    # 4. Closed parts face outward: positive signed volume
    oriented = np.where(flip[:, None], faces[:, ::-1], faces)
    _, edge_of_face, edge_uses = np.unique(keys, return_inverse=True, return_counts=True)
    open_face = (edge_uses[edge_of_face] != 2).reshape(-1, 3).any(axis=1)
    part_open = np.bincount(part, weights=open_face, minlength=2 * count) > 0
    first_vertex = _group_first(position)
    triangles = mesh.vertices[first_vertex[oriented]]
    signed = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2]))
    part_volume = np.bincount(part, weights=signed, minlength=2 * count)
    flip ^= ((part_volume < 0) & ~part_open)[part]

    if flip.any():
        faces = mesh.faces.copy()
        faces[flip] = faces[flip, ::-1]
        mesh.faces = faces
    return flip


def _follow_faces(mesh: trimesh.Trimesh, position: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Carried normals, each negated where it points against the faces around its position."""
    smooth = np.zeros((position.max() + 1, 3))
    area_normals = np.cross(
        mesh.vertices[mesh.faces[:, 1]] - mesh.vertices[mesh.faces[:, 0]],
        mesh.vertices[mesh.faces[:, 2]] - mesh.vertices[mesh.faces[:, 0]],
    )
    for k in range(3):
        np.add.at(smooth, position[mesh.faces[:, k]], area_normals)
    against = np.einsum("ij,ij->i", normals, smooth[position]) < 0
    result = normals.copy()
    result[against] *= -1
    return result
