"""Generate UVs: texture coordinates for meshes that have none, charted and packed by xatlas.

Baking (lightmaps, ambient occlusion, textures from vertex colours or from a
high-resolution model) needs every triangle to own a patch of the texture. CAD
tessellations, scans and STL files come without texture coordinates; this step
cuts each such mesh into charts that unfold with little stretch, packs them into the
unit square with a margin between them, and splits the vertices along the chart
borders (UV seams), which `decimate` then keeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import trimesh

from tasks.steps._meshes import given_vertex_normals, is_mesh, placements, vertex_uv
from tasks.steps.errors import OptionsError
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateUvsOptions:
    """How meshes are unwrapped and packed."""

    overwrite: bool = False
    """Unwrap meshes that already have texture coordinates too, replacing them. Default
    False: they are left alone (their textures depend on them)."""

    resolution: int = 1024
    """Size in texels of the square texture the charts are packed for; ``padding`` is
    measured in its texels. Default 1024."""

    padding: int = 2
    """Texels left empty around every chart, so filtering and mipmaps do not bleed one
    chart into its neighbour. Default 2."""

    texels_per_unit: float | None = None
    """Texel density: texels per scene unit (metre). Charts are scaled to it and the atlas
    grows to fit; None (default) scales the charts to fill ``resolution``."""

    max_chart_area: float = 0.0
    """Largest chart area in scene units squared; 0 (default): no limit (xatlas decides
    by stretch and seam length)."""


GENERATE_UVS_DEFAULTS = GenerateUvsOptions()


def generate_uvs(
    scene: Scene, options: GenerateUvsOptions | None = None, report: dict | None = None
) -> Scene:
    """Give every mesh without texture coordinates an xatlas unwrap in [0, 1]; in place.

    A mesh placed several times is unwrapped once. Positions, triangles, normals and
    materials are kept; vertices on chart borders are split, so the vertex count grows
    (typically 10-30 %) while the triangle count stays.

    Settings: the defaults suit a 1024 texture bake; ``GenerateUvsOptions(padding=8,
    resolution=4096)`` for large lightmaps with mipmaps; ``texels_per_unit=512`` for the
    same texel density on every part (about 2 mm texels). Run `repair` first on triangle
    soups (split vertices make every triangle its own chart) and unwrap before
    `decimate`, which keeps the seams.

    ``report``, when given, receives ``meshes_unwrapped``, ``meshes_kept`` (had UVs),
    ``meshes_skipped`` (colours per vertex or face, see the warning), ``charts`` and
    ``vertices_before`` / ``vertices_after`` of the unwrapped meshes.

    Reference: Jonathan Young, xatlas (after Thekla and Microsoft's UVAtlas), charts by
    Lévy et al., "Least squares conformal maps" (2002).
    """
    import xatlas

    options = options or GENERATE_UVS_DEFAULTS
    _check(options)

    # 1. The meshes to unwrap, each once
    meshes: dict[str, trimesh.Trimesh] = {}
    kept = coloured = others = 0
    for placement in placements(scene.trimesh_scene):
        name, mesh = placement.geometry_name, placement.geometry
        if name in meshes:
            continue
        if not is_mesh(mesh):
            others += 1
        elif vertex_uv(mesh) is not None and not options.overwrite:
            kept += 1
        elif isinstance(mesh.visual, trimesh.visual.ColorVisuals) and mesh.visual.kind:
            coloured += 1
        else:
            meshes[name] = mesh

    # 2. Unwrap and pack each one into its own unit square
    charts = vertices_before = vertices_after = 0
    for name, mesh in meshes.items():
        unwrapped, count = _unwrap(mesh, options, xatlas)
        scene.trimesh_scene.geometry[name] = unwrapped
        charts += count
        vertices_before += len(mesh.vertices)
        vertices_after += len(unwrapped.vertices)

    # 3. Say what was done and what was left alone
    numbers = {
        "meshes_unwrapped": len(meshes),
        "meshes_kept": kept,
        "meshes_skipped": coloured,
        "charts": charts,
        "vertices_before": vertices_before,
        "vertices_after": vertices_after,
    }
    if report is not None:
        report.update(numbers)
    if coloured:
        scene.warn(
            f"generate_uvs: skipped {coloured} meshes with vertex or face colours"
            " (a textured mesh would lose them)"
        )
    if others:
        scene.warn(f"generate_uvs: skipped {others} placed geometries that are not triangle meshes")
    logger.debug("generate_uvs: %s", numbers)
    return scene


def _unwrap(mesh: trimesh.Trimesh, options: GenerateUvsOptions, xatlas) -> tuple:
    """(the mesh with new texture coordinates, its number of charts)."""
    # 1. run xatlas on positions (and normals, which guide where charts are cut)
    normals = given_vertex_normals(mesh)
    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        np.ascontiguousarray(mesh.faces, dtype=np.uint32),
        None if normals is None else np.ascontiguousarray(normals, dtype=np.float32),
    )
    charting = xatlas.ChartOptions()
    charting.max_chart_area = options.max_chart_area
    packing = xatlas.PackOptions()
    packing.padding = options.padding
    packing.bilinear = True
    if options.texels_per_unit is not None:
        packing.texels_per_unit = options.texels_per_unit
    else:
        packing.resolution = options.resolution
    atlas.generate(charting, packing)
    origin, faces, uv = atlas.get_mesh(0)

    # 2. the split vertices, with everything the originals carried
    origin = origin.astype(np.int64)
    result = trimesh.Trimesh(
        vertices=mesh.vertices[origin],
        faces=faces.astype(np.int64).reshape(-1, 3),
        vertex_normals=None if normals is None else normals[origin],
        metadata=dict(mesh.metadata),
        process=False,
    )
    material = getattr(mesh.visual, "material", None)
    result.visual = trimesh.visual.TextureVisuals(
        uv=np.clip(uv.astype(np.float64), 0.0, 1.0), material=material
    )
    for key, values in mesh.vertex_attributes.items():
        if len(values) == len(mesh.vertices):
            result.vertex_attributes[key] = np.asarray(values)[origin]
    for key, values in mesh.face_attributes.items():
        if len(values) == len(mesh.faces):  # xatlas keeps the triangles in order
            result.face_attributes[key] = np.asarray(values)
    return result, int(atlas.chart_count)


def _check(options: GenerateUvsOptions) -> None:
    if options.resolution < 1:
        raise OptionsError(f"generate_uvs: resolution must be at least 1, got {options.resolution}")
    if options.padding < 0:
        raise OptionsError(f"generate_uvs: padding must be >= 0, got {options.padding}")
    if options.texels_per_unit is not None and not options.texels_per_unit > 0:
        raise OptionsError(
            f"generate_uvs: texels_per_unit must be > 0, got {options.texels_per_unit}"
        )
    if options.max_chart_area < 0:
        raise OptionsError(
            f"generate_uvs: max_chart_area must be >= 0, got {options.max_chart_area}"
        )
