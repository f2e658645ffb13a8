"""Measure how far two surfaces are apart: the symmetric Hausdorff distance, Metro-style.

Used to check what decimation cost (tests, `bench/geometry.py`) and to report
it. The distance from surface A to surface B is the largest distance from a
point of A to the nearest point of B; the symmetric distance is the larger of
A->B and B->A.

How it is measured, and how far to trust it:

* Points of A: every vertex and ``samples`` points spread over A by area.
  Simplification error peaks at the removed vertices (A's vertices, measured
  against B) and inside B's large new triangles (B's samples, against A), so
  both directions catch their maximum far better than random points alone
  (Cignoni et al., "Metro: measuring error on simplified surfaces", 1998,
  samples the same way).
* Each point's distance to B is exact, not a distance to B's samples: a k-d
  tree of B's triangle centroids gives a first exact point-triangle distance
  ``d`` from the nearest few, then every triangle that could beat it is
  checked -- a triangle whose centroid is ``c`` away and whose corners are at
  most ``r`` from that centroid lies at least ``c - r`` away, so only those
  with ``c - r < d`` can, and they all have ``c < d + max(r)``.
* The result is therefore a lower bound of the true Hausdorff distance, short
  of it by at most the distance from the worst point of A to its nearest sample
  (distance to a surface is 1-Lipschitz); with the vertices included that gap
  is below half an edge of the denser mesh, and in practice far smaller.
"""

from __future__ import annotations

import itertools

import numpy as np
import trimesh
from scipy.spatial import cKDTree

_NEIGHBOURS = 2
"""Triangles tried first per point, to get a distance to beat."""

_CHUNK = 65_536
"""Points per vectorised batch, bounding memory to ~100 MB."""


def hausdorff_distance(
    a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = 100_000, seed: int = 0
) -> float:
    """Symmetric Hausdorff distance between the surfaces of ``a`` and ``b``, in their units.

    ``samples`` random points are added per direction on top of every vertex;
    100k keeps a 1M-triangle comparison to seconds.
    Divide by the bounding-box diagonal of ``a`` for a scale-free figure.
    """
    return max(
        one_sided_distance(a, b, samples, seed),
        one_sided_distance(b, a, samples, seed + 1),
    )


def one_sided_distance(
    source: trimesh.Trimesh, target: trimesh.Trimesh, samples: int = 100_000, seed: int = 0
) -> float:
    """Largest distance from a point of ``source`` to the surface of ``target``."""
    if len(source.faces) == 0 or len(target.faces) == 0:
        raise ValueError("both meshes need faces to measure a surface distance")
    points = np.vstack(
        [
            source.vertices[np.unique(source.faces)],
            trimesh.sample.sample_surface(source, samples, seed=seed)[0],
        ]
    )
    return float(surface_distances(points, target).max())


def surface_distances(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Exact distance from each point to the nearest triangle of ``mesh``."""
    triangles = _split_large(mesh.triangles)
    centroids = triangles.mean(axis=1)
    reach = _reach(triangles, centroids)
    tree = cKDTree(centroids)
    k = min(_NEIGHBOURS, len(triangles))
    result = np.empty(len(points))
    for start in range(0, len(points), _CHUNK):
        chunk = points[start : start + _CHUNK]
        # 1. A first answer from the triangles with the nearest centroids
        _, candidates = tree.query(chunk, k=k)
        candidates = candidates.reshape(len(chunk), k)
        found = _point_triangle_distance(np.repeat(chunk, k, axis=0), triangles[candidates.ravel()])
        best = found.reshape(len(chunk), k).min(axis=1)
        # 2. Every triangle that could beat it: centroid within best + reach
        near = tree.query_ball_point(chunk, best + reach.max())
        counts = np.fromiter((len(n) for n in near), dtype=np.int64, count=len(near))
        owner = np.repeat(np.arange(len(chunk)), counts)
        faces = np.fromiter(itertools.chain.from_iterable(near), dtype=np.int64, count=counts.sum())
        gap = np.linalg.norm(chunk[owner] - centroids[faces], axis=1) - reach[faces]
        could = gap < best[owner]
        owner, faces = owner[could], faces[could]
        found = _point_triangle_distance(chunk[owner], triangles[faces])
        np.minimum.at(best, owner, found)
        result[start : start + len(chunk)] = best
    return result


def _reach(triangles: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Per triangle, the largest distance from its centroid to a corner."""
    return np.linalg.norm(triangles - centroids[:, None], axis=2).max(axis=1)


def _split_large(triangles: np.ndarray) -> np.ndarray:
    """The same surface with no triangle reaching beyond the median reach.

    The pruning bound uses the largest reach; a few long triangles (a decimated
    mesh has them) would make it useless. Halving them across their longest edge
    leaves the surface, hence every distance, unchanged; a CAD sliver 100 times
    longer than wide becomes ~128 pieces (1-to-4 splits made ~16,000 of it).
    """
    limit = float(np.median(_reach(triangles, triangles.mean(axis=1))))
    for _ in range(32):
        large = _reach(triangles, triangles.mean(axis=1)) > limit
        if not large.any():
            break
        split = triangles[large]
        # rotate each triangle so that its longest edge runs from corner 0 to corner 1
        lengths = np.linalg.norm(split - np.roll(split, -1, axis=1), axis=2)
        first = lengths.argmax(axis=1)
        order = (first[:, None] + np.arange(3)) % 3
        split = np.take_along_axis(split, order[:, :, None], axis=1)
        a, b, c = split[:, 0], split[:, 1], split[:, 2]
        middle = (a + b) / 2
        halves = np.stack([a, middle, c, middle, b, c], axis=1).reshape(-1, 3, 3)
        triangles = np.concatenate([triangles[~large], halves])
    return triangles


def _point_triangle_distance(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance from each point to its paired triangle (both arrays of the same length)."""
    closest = trimesh.triangles.closest_point(triangles, points)
    return np.linalg.norm(points - closest, axis=1)
