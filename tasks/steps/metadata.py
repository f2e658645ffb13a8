"""Describe a scene in numbers: the counts and measures clients read after every job.

Returns a plain dict, ready for ``json.dumps``: the sixteen keys of the PiXYZ
API's metadata (bounding-box diagonal, parts, materials, B-rep and mesh
topology counts, polygons, animations, variants, PMI and metadata counts),
plus the bounding box, area, volume, point count and a per-part table.

Counts follow what a viewer draws: every placement of a mesh counts (a part
placed twice adds its triangles, vertices and edges twice). Edges are read on
positions, so vertices split only for a UV seam or a hard normal do not turn
their edge into a boundary (see `_meshes`). CAD-only counts (B-rep, PMI,
variants, animations, metadata) come from ``scene.facts`` and are 0 when the
source had none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from tasks.steps._meshes import is_mesh, material_key, placements, topology
from tasks.steps.io.common import has_point_colours
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

FACT_KEYS = (
    "brep_boundary",
    "brep_body_count",
    "animation_count",
    "variant_count",
    "pmi_component_count",
    "annotation_group_count",
    "annotation_count",
    "metadata_component_count",
    "metadata_property_count",
)
"""Keys read from ``scene.facts`` as they are (0 when missing)."""


@dataclass(frozen=True)
class MetadataOptions:
    """What to include."""

    parts: bool = True
    """Include the per-part table ``parts``; an assembly of 100k parts may not want it.
    Default: True."""


METADATA_DEFAULTS = MetadataOptions()


def metadata(scene: Scene, options: MetadataOptions | None = None) -> dict[str, Any]:
    """The scene's counts and measures as a JSON-ready dict (the scene is not changed).

    Keys: ``aabb`` (bounding-box diagonal), ``part_count`` (placed meshes),
    ``material_count``, ``brep_boundary``, ``brep_body_count``,
    ``mesh_boundary`` (boundary edges), ``mesh_edge_count``,
    ``mesh_vertex_count``, ``polygon_count`` (triangles), ``animation_count``,
    ``variant_count``, ``pmi_component_count``, ``annotation_group_count``,
    ``annotation_count``, ``metadata_component_count``,
    ``metadata_property_count``; then ``bounding_box`` ({min, max, size} in
    metres, +Y up, None for an empty scene), ``source`` (the file's ``unit``,
    ``metres_per_unit``, ``up_axis`` and the box ``size`` along its own axes in its own
    unit: 200 x 150 x 84 for a 200 mm plate), ``area`` (m²), ``volume`` (m³, None unless
    every mesh is watertight), ``watertight``, ``point_count`` (points of
    point clouds), ``point_cloud_count`` (placed clouds: an E57's scans), ``point_colors``
    (every cloud has colours read from the file's RGB, not greys made from intensity),
    ``point_intensity`` (every cloud kept an intensity per point) and, with ``parts``,
    ``parts``: one row per placed mesh,
    ``{name, triangles, vertices, material, watertight, bounds}``.

    Settings: ``MetadataOptions()`` for a job's result;
    ``MetadataOptions(parts=False)`` for huge assemblies, where the table
    would outweigh the rest.

    Run it last (after `repair`, so ``volume`` can be given) or on the scene as
    read to describe the input. Cost grows with triangles (edges are counted
    per mesh once, then multiplied by its placements).

    Reference: PiXYZ Scenario Processor, ``scene.getMetadata`` / the PiXYZ
    API's model metadata fields.
    """
    options = options or METADATA_DEFAULTS
    source = scene.trimesh_scene

    # 1. Walk the placements; topology is counted once per distinct mesh
    topologies: dict[str, Any] = {}
    materials: set[object] = set()
    corners: list[np.ndarray] = []
    parts: list[dict[str, Any]] = []
    totals = dict(edges=0, boundary=0, vertices=0, triangles=0, points=0)
    clouds = dict(count=0, coloured=0, intensity=0)
    area = volume = 0.0
    watertight = True
    meshes = 0
    for placement in placements(source):
        geometry, transform = placement.geometry, placement.transform
        if isinstance(geometry, trimesh.PointCloud):
            totals["points"] += len(geometry.vertices)
            clouds["count"] += 1
            clouds["coloured"] += has_point_colours(geometry)
            clouds["intensity"] += "intensity" in geometry.metadata
            corners.append(_world_bounds(geometry.vertices, transform))
            continue
        if not is_mesh(geometry):
            continue
        meshes += 1
        if placement.geometry_name not in topologies:
            topologies[placement.geometry_name] = topology(geometry)
        shape = topologies[placement.geometry_name]
        found = material_key(geometry)
        if found is not None:
            materials.add(found[0])

        # 2. Per placement: world bounds, area and volume under its transform
        world = _transformed(geometry.vertices, transform)
        bounds = np.array([world.min(axis=0), world.max(axis=0)])
        corners.append(bounds)
        area += float(trimesh.triangles.area(world[geometry.faces]).sum())
        watertight &= shape.watertight
        if shape.watertight:
            # an inside-out solid has a negative signed volume but the same size
            volume += abs(float(geometry.volume) * float(np.linalg.det(transform[:3, :3])))
        totals["edges"] += shape.edges
        totals["boundary"] += shape.boundary_edges
        totals["vertices"] += len(geometry.vertices)
        totals["triangles"] += len(geometry.faces)
        if options.parts:
            parts.append(
                {
                    "name": placement.node,
                    "triangles": len(geometry.faces),
                    "vertices": len(geometry.vertices),
                    "material": None if found is None else found[1],
                    "watertight": shape.watertight,
                    "bounds": bounds.tolist(),
                }
            )

    # 3. Assemble, CAD facts as read
    box = None
    diagonal = 0.0
    if corners:
        stacked = np.vstack(corners)
        low, high = stacked.min(axis=0), stacked.max(axis=0)
        diagonal = float(np.linalg.norm(high - low))
        box = {"min": low.tolist(), "max": high.tolist(), "size": (high - low).tolist()}
    watertight = watertight and meshes > 0
    result: dict[str, Any] = {
        "aabb": diagonal,
        "part_count": meshes,
        "material_count": len(materials),
        "brep_boundary": 0,
        "brep_body_count": 0,
        "mesh_boundary": totals["boundary"],
        "mesh_edge_count": totals["edges"],
        "mesh_vertex_count": totals["vertices"],
        "polygon_count": totals["triangles"],
    }
    result.update({key: _plain(scene.facts.get(key, 0)) for key in FACT_KEYS})
    result.update(
        {
            "bounding_box": box,
            "source": _source(scene, box),
            "area": area,
            "volume": volume if watertight else None,
            "watertight": watertight,
            "point_count": totals["points"],
            "point_cloud_count": clouds["count"],
            "point_colors": clouds["count"] > 0 and clouds["coloured"] == clouds["count"],
            "point_intensity": clouds["count"] > 0 and clouds["intensity"] == clouds["count"],
        }
    )
    if options.parts:
        result["parts"] = parts
    logger.debug(
        "metadata: %d parts, %d triangles, %d materials",
        meshes,
        totals["triangles"],
        len(materials),
    )
    return result


def _source(scene: Scene, box: dict | None) -> dict[str, Any]:
    """The source's unit and up axis, and the box size measured the way the file does."""
    from tasks.steps.units import describe_frame, frame_matrix

    unit, up_axis = scene.source_unit or 1.0, scene.source_up_axis or "y"
    source = describe_frame(unit, up_axis)
    size = None
    if box is not None:
        change = frame_matrix(scene.unit or 1.0, scene.up_axis or "y", unit, up_axis)
        size = np.abs(change[:3, :3] @ np.asarray(box["size"])).tolist()
    return {**source, "size": size}


def _transformed(vertices: np.ndarray, transform: np.ndarray) -> np.ndarray:
    if np.allclose(transform, np.eye(4)):
        return np.asarray(vertices, dtype=np.float64)
    return vertices @ transform[:3, :3].T + transform[:3, 3]


def _world_bounds(vertices: np.ndarray, transform: np.ndarray) -> np.ndarray:
    world = _transformed(vertices, transform)
    return np.array([world.min(axis=0), world.max(axis=0)])


def _plain(value: Any) -> int | float:
    """A fact as a JSON number (facts may arrive as numpy scalars)."""
    number = float(value)
    return int(number) if number.is_integer() else number
