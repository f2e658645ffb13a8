"""Merge meshes: one mesh per material, or one mesh for the whole scene, transforms baked in.

A CAD assembly or a game level arrives as thousands of small meshes, each a
draw call; joining those that share a material leaves one draw call per
material and the exact same picture. Every placement is baked into world
coordinates, so a part placed twice becomes two copies in the merged mesh
and the triangle count is unchanged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import trimesh

from tasks.steps._meshes import is_mesh, material_key, placements
from tasks.steps.errors import OptionsError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

MODES = ("by_material", "all")


@dataclass(frozen=True)
class MergeOptions:
    """How meshes are grouped."""

    mode: str = "by_material"
    """``by_material``: one mesh per material, named after it; ``all``: one mesh named
    ``merged`` (trimesh packs differing materials into one, atlasing textures).
    Default: ``by_material``."""


MERGE_DEFAULTS = MergeOptions()

_UNNAMED = "default"
"""Name of the group of meshes that have no material."""


def merge(scene: Scene, options: MergeOptions | None = None) -> Scene:
    """Join the placed meshes of ``scene`` by material (or all of them) into world-space meshes.

    The result has one node per merged mesh, at the identity transform, named
    after its material (``by_material``; meshes without a material join a
    ``default`` mesh) or ``merged`` (``all``). Placements are baked: a mesh
    placed twice counts twice, as it did when drawn. Point clouds and paths are
    kept as they were, each on its own node, with a warning.

    Settings: ``MergeOptions()`` for fewer draw calls with the same materials
    (the usual choice before export); ``MergeOptions(mode="all")`` for one
    mesh to measure, print or collide with (materials are packed into one, so
    looks may change).

    Run `repair` first if you need per-part repairs (merging joins parts into one
    mesh) and `decimate` after, so the budget is spread over the merged meshes.

    Reference: gltf-transform's ``join()``, which joins compatible primitives.
    """
    options = options or MERGE_DEFAULTS
    if options.mode not in MODES:
        raise OptionsError(f"merge: mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    source = scene.trimesh_scene

    # 1. Bake every placement into world space, grouped by material
    groups: dict[object, list[trimesh.Trimesh]] = defaultdict(list)
    names: dict[object, str] = {}
    others = []
    for placement in placements(source):
        if not is_mesh(placement.geometry):
            others.append(placement)
            continue
        key = _ALL
        if options.mode == "by_material":
            found = material_key(placement.geometry)
            key, names[key] = (found[0], found[1]) if found else (None, _UNNAMED)
        groups[key].append(_baked(placement.geometry, placement.transform))
    before = sum(len(mesh.faces) for meshes in groups.values() for mesh in meshes)

    # 2. Concatenate each group into one mesh on its own node
    merged = trimesh.Scene(metadata=dict(source.metadata))
    taken: set[str] = set()
    for key, meshes in groups.items():
        # two materials may share a name; nodes may not
        name = _unique("merged" if key is _ALL else names[key], taken)
        mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
        merged.add_geometry(mesh, node_name=name, geom_name=name)

    # 3. Keep what is not a mesh where it was
    for placement in others:
        merged.add_geometry(
            placement.geometry,
            node_name=_unique(placement.node, taken),
            geom_name=_unique(placement.geometry_name, taken),
            transform=placement.transform,
        )
    if others:
        scene.warn(f"merge: kept {len(others)} placed geometries that are not meshes unmerged")

    scene.trimesh_scene = merged
    logger.debug(
        "merge (%s): %d placements -> %d meshes, %d triangles -> %d",
        options.mode,
        sum(len(meshes) for meshes in groups.values()),
        len(groups),
        before,
        scene.triangle_count,
    )
    return scene


_ALL = object()
"""Group key of ``mode="all"``."""


def _baked(mesh: trimesh.Trimesh, transform: np.ndarray) -> trimesh.Trimesh:
    """A world-space copy of ``mesh`` at ``transform``.

    The cache travels with the copy because it holds the file's vertex normals,
    which trimesh then turns with the mesh (and flips the faces of a mirror).
    """
    baked = mesh.copy(include_cache=True)
    if not np.allclose(transform, np.eye(4)):
        baked.apply_transform(transform)
    return baked


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2``... if a node already has it."""
    candidate, number = name, 0
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate
