"""Shared walks over a scene's placed meshes, for repair, merge, decimate and metadata.

Two ideas the steps agree on live here so they cannot drift apart:

* a *placement* is one node of the scene graph that shows a geometry, with its
  world transform; a mesh placed twice has two placements;
* a mesh's *topology* is read on its positions alone: vertices split only to
  carry a UV seam or a hard normal still join their faces, so a closed, textured
  model counts as closed and its seams are not boundary edges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh
from trimesh.grouping import hashable_rows, unique_rows


@dataclass(frozen=True)
class Placement:
    """One node of the scene graph that shows a geometry."""

    node: str
    """Node name in the scene graph."""

    geometry_name: str
    """Key of the geometry in ``trimesh_scene.geometry``."""

    geometry: Any
    """The geometry itself: a Trimesh, PointCloud or Path."""

    transform: np.ndarray
    """(4, 4) node-to-world transform."""


def placements(scene: trimesh.Scene) -> Iterator[Placement]:
    """Every placed geometry of ``scene``, in the graph's node order."""
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if geometry is not None:
            yield Placement(node, name, geometry, np.asarray(transform, dtype=np.float64))


def is_mesh(geometry: Any) -> bool:
    """True for a triangle mesh with at least one face."""
    return isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 0


def scene_diagonal(scene: trimesh.Scene) -> float:
    """Length of the world bounding-box diagonal, 0.0 for an empty scene."""
    bounds = scene.bounds
    if bounds is None:
        return 0.0
    return float(np.linalg.norm(bounds[1] - bounds[0]))


def max_scale(transform: np.ndarray) -> float:
    """Largest factor by which ``transform`` stretches a length."""
    return float(np.linalg.norm(transform[:3, :3], ord=2))


def given_vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Vertex normals the mesh already carries (read from the file or computed before), else None.

    Reading ``mesh.vertex_normals`` would compute smooth normals on demand; steps
    must keep that decision to the exporter, so they only carry normals that exist.
    """
    normals = mesh._cache["vertex_normals"]
    if normals is None or len(normals) != len(mesh.vertices):
        return None
    return np.asarray(normals)


def vertex_uv(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex texture coordinates, else None."""
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        return None
    return np.asarray(uv, dtype=np.float64)


def vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex RGBA colours (0..255) when the mesh has them, else None."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        return np.asarray(visual.vertex_colors)
    return None


def keep_vertices(
    mesh: trimesh.Trimesh,
    origin: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None = None,
    face_colors: np.ndarray | None = None,
) -> trimesh.Trimesh:
    """A new mesh of the vertices ``origin`` of ``mesh`` (indices, in their new order) and
    ``faces`` (indices into ``origin``), with what those vertices carried.

    Carried vertex normals, UVs and the material, vertex colours, vertex attributes and
    the metadata follow; nothing is recomputed. ``colors`` (RGBA per vertex of ``mesh``)
    replaces the mesh's own vertex colours, ``face_colors`` (per new face) sets face colours;
    used by the steps that keep a subset of a mesh (`remove_hidden`, `decimate`).
    """
    normals = given_vertex_normals(mesh)
    result = trimesh.Trimesh(
        vertices=mesh.vertices[origin],
        faces=np.asarray(faces).reshape(-1, 3),
        vertex_normals=None if normals is None else normals[origin],
        metadata=dict(mesh.metadata),
        process=False,
    )
    visual = mesh.visual
    if colors is None:
        colors = vertex_colors(mesh)
    if isinstance(visual, trimesh.visual.TextureVisuals):
        uv = vertex_uv(mesh)
        result.visual = trimesh.visual.TextureVisuals(
            uv=None if uv is None else uv[origin], material=visual.material
        )
    elif colors is not None:
        result.visual = trimesh.visual.ColorVisuals(result, vertex_colors=colors[origin])
    elif face_colors is not None:
        result.visual = trimesh.visual.ColorVisuals(result, face_colors=face_colors)
    for key, values in mesh.vertex_attributes.items():
        if len(values) == len(mesh.vertices):
            result.vertex_attributes[key] = np.asarray(values)[origin]
    return result


def material_key(mesh: trimesh.Trimesh) -> tuple[int, str] | None:
    """A hashable identity of the mesh's material and its display name; None without one.

    Materials compare by content (trimesh hashes their properties), so two
    copies of one material are one material. Vertex or face colours are not a
    material (glTF writes them as a vertex attribute under a default material).
    """
    material = getattr(mesh.visual, "material", None)
    if material is None:
        return None
    key = hash(material)
    return key, getattr(material, "name", None) or f"material_{key & 0xFFFFFF:06x}"


def position_ids(vertices: np.ndarray) -> np.ndarray:
    """For each vertex, the index of its position among the distinct positions.

    Positions equal to 8 decimals are one position; vertices split for UV seams
    or hard normals therefore share an id.
    """
    if len(vertices) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = unique_rows(vertices)
    return inverse


def edge_use_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct undirected edges of ``faces`` (sorted pairs) and how many faces use each."""
    if len(faces) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, first, counts = np.unique(hashable_rows(edges), return_index=True, return_counts=True)
    return edges[first], counts


@dataclass(frozen=True)
class Topology:
    """Edge counts of one mesh read on positions (seams joined)."""

    edges: int
    """Distinct edges."""

    boundary_edges: int
    """Edges used by exactly one face: the rims of holes and open borders."""

    non_manifold_edges: int
    """Edges used by more than two faces."""

    @property
    def watertight(self) -> bool:
        """Every edge joins exactly two faces."""
        return self.edges > 0 and self.boundary_edges == 0 and self.non_manifold_edges == 0


def topology(mesh: trimesh.Trimesh) -> Topology:
    """Edge counts of ``mesh`` with vertices joined by position."""
    ids = position_ids(mesh.vertices)
    _, counts = edge_use_counts(ids[mesh.faces])
    return Topology(
        edges=len(counts),
        boundary_edges=int((counts == 1).sum()),
        non_manifold_edges=int((counts > 2).sum()),
    )
