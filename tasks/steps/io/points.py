"""Point clouds in and out: E57 scans, LAS/LAZ, PTS and XYZ text read; LAS/LAZ written.

Every reader streams its file in chunks of `CHUNK_POINTS` through one `_Sampler`, so a
cloud larger than ``LoadOptions.max_points`` is subsampled while it is read and never
held whole: a 20 M-point LAS converts within a few hundred megabytes.

What each cloud keeps (a `trimesh.PointCloud` per LAS/PTS/XYZ file, one per E57 scan):

- positions, in float64, relative to the node that carries them. An E57 scan's node
  holds its pose (rotation and translation), so scans stay apart and placed; a LAS
  file's node holds the centre of its header's box, so georeferenced coordinates keep
  their millimetres in float32 outputs (GLB).
- colours, when the file has them (LAS 16-bit colours become 8-bit; a file whose
  LAS colours never pass 255 is taken as written 8-bit, as CloudCompare does).
- intensity, as ``cloud.metadata["intensity"]``: float32 in 0..1 (E57 by its
  ``intensityLimits``, LAS over 0..65535, PTS over -2048..2047 as Leica writes it). A
  cloud with intensity and no colours is coloured grey by it, stretched over its
  range, so thumbnails and viewers show structure; ``cloud.metadata["colours"]``
  says where colours came from: ``"rgb"``, ``"intensity"`` or ``"none"``.

Units: E57 is metres by its standard; LAS is metres unless its CRS (GeoTIFF keys or
WKT) names a foot or another linear unit, which then becomes ``Scene.unit``; PTS and
XYZ declare none (metres unless ``input_unit`` says otherwise). All are Z-up (the
registry's ``up_axis="z"``), as surveying tools draw them.

References: ASTM E2807 (E57) through libE57Format (pye57); ASPRS LAS 1.4 R15 through
laspy, LAZ through lazrs.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.errors import OptionsError
from tasks.steps.io.common import has_point_colours, placed_meshes, read_error, write_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

CHUNK_POINTS = 1_000_000
"""Points read (and written) per chunk: ~60 MB of working arrays for a LAS chunk."""

SUBSAMPLE_METHODS = ("random", "voxel")

_SEED = 0  # subsampling is reproducible: the same file and options keep the same points
_CELL_GROWTH = 1.25  # each coarsening of the voxel grid keeps at least half the cells
_KEY_BITS = 21  # voxel indices per axis packed into one int64 key
_TABLE_CELLS = 1 << 25  # a grid of at most this many cells is tracked in a 32 MB table


@dataclass
class _Chunk:
    """Some points of a cloud, in file order."""

    xyz: np.ndarray
    """(n, 3) float64."""
    rgb: np.ndarray | None = None
    """(n, 3) unsigned integers as the file holds them (8- or 16-bit), or None."""
    intensity: np.ndarray | None = None
    """(n,) float32 in 0..1, or None."""

    def __len__(self) -> int:
        return len(self.xyz)

    def take(self, index: np.ndarray) -> _Chunk:
        return _Chunk(
            self.xyz[index],
            None if self.rgb is None else self.rgb[index],
            None if self.intensity is None else self.intensity[index],
        )


def _concatenate(chunks: list[_Chunk]) -> _Chunk:
    if not chunks:
        return _Chunk(np.zeros((0, 3)))
    if len(chunks) == 1:
        return chunks[0]

    def joined(name):
        parts = [getattr(chunk, name) for chunk in chunks]
        return None if any(part is None for part in parts) else np.concatenate(parts)

    return _Chunk(joined("xyz"), joined("rgb"), joined("intensity"))


# -- subsampling while streaming ---------------------------------------------------------


class _Sampler:
    """Keeps at most ``max_points`` of a stream of chunks, holding no more than that plus
    one chunk at a time.

    ``random``: exactly ``min(max_points, total)`` points drawn uniformly without
    replacement, chunk by chunk (each chunk's share is hypergeometric), so density
    stays as scanned. ``voxel``: the first point in each cell of a grid that is coarsened
    (by 1.25x) whenever more than ``max_points`` cells are occupied, giving even spacing
    and between about half of and ``max_points`` points. ``total`` is the file's point
    count as its header (or line count) gives it; a smaller real count only leaves fewer
    points.
    """

    def __init__(self, total: int, max_points: int | None, method: str, bounds=None):
        self.total, self.max_points, self.method = int(total), max_points, method
        self.sampling = max_points is not None and total > max_points
        self.rng = np.random.default_rng(_SEED)
        self.remaining, self.needed = self.total, max_points or 0
        self.kept: list[_Chunk] = []
        self.seen = 0
        # voxel: the grid starts at the file's box when its header gives one
        self.bounds = None if bounds is None else np.asarray(bounds, dtype=np.float64)
        if self.bounds is not None and not np.isfinite(self.bounds).all():
            self.bounds = None
        self.origin = None if self.bounds is None else self.bounds[0]
        self.cell = 0.0
        if self.bounds is not None and max_points:
            extent = float(np.max(self.bounds[1] - self.bounds[0]))
            self.cell = max(extent, 1e-9) / np.sqrt(max_points) / 2
        self.table: np.ndarray | None = None  # occupied cells, one flag per cell of the box
        self.occupied = np.zeros(0, np.int64)  # ...or sorted keys, when the box is unknown
        self.count = 0

    def add(self, chunk: _Chunk) -> None:
        self.seen += len(chunk)
        if not len(chunk):
            return
        if not self.sampling:
            self.kept.append(chunk)
        elif self.method == "random":
            self._add_random(chunk)
        else:
            self._add_voxel(chunk)

    def result(self) -> _Chunk:
        return _concatenate(self.kept)

    def _add_random(self, chunk: _Chunk) -> None:
        count = len(chunk)
        remaining = max(self.remaining, count)
        needed = min(self.needed, remaining)
        take = int(self.rng.hypergeometric(count, remaining - count, needed)) if needed else 0
        self.remaining, self.needed = remaining - count, needed - take
        if take:
            index = np.sort(self.rng.choice(count, take, replace=False))
            self.kept.append(chunk.take(index))

    def _add_voxel(self, chunk: _Chunk) -> None:
        if not self.kept:
            if self.origin is None:
                self.origin = chunk.xyz.min(axis=0)
            if self.cell <= 0:
                extent = float(np.ptp(chunk.xyz, axis=0).max())
                self.cell = max(extent, 1e-9) / np.sqrt(self.max_points) / 2
            self.kept = [chunk.take(np.zeros(0, int))]
            self._regrid()
        # 1. the chunk's cells, on a grid coarse enough to pack them
        while (keys := self._keys(chunk.xyz)) is None:
            self._coarsen()
        # 2. its first point in each cell no kept point holds (only those are sorted: once
        # the grid is full, a chunk costs one look-up per point)
        if self.table is not None:
            fresh = np.flatnonzero(~self.table[keys])
        elif len(self.occupied):
            at = np.minimum(np.searchsorted(self.occupied, keys), len(self.occupied) - 1)
            fresh = np.flatnonzero(self.occupied[at] != keys)
        else:
            fresh = np.arange(len(keys))
        cells, first = np.unique(keys[fresh], return_index=True)
        if len(first):
            (kept,) = self.kept
            self.kept = [_concatenate([kept, chunk.take(np.sort(fresh[first]))])]
            if self.table is not None:
                self.table[cells] = True
            else:
                self.occupied = np.union1d(self.occupied, cells)
            self.count += len(cells)
        # 3. coarser cells until at most max_points are occupied
        while self.count > self.max_points:
            self._coarsen()

    def _coarsen(self) -> None:
        """Grow the cells and keep the first kept point in each."""
        self.cell *= _CELL_GROWTH
        self._regrid()

    def _regrid(self) -> None:
        """Occupancy of the kept points on the current cells (a table when the box is known
        and holds at most `_TABLE_CELLS` cells)."""
        self.dims = None
        if self.bounds is not None:
            dims = np.floor((self.bounds[1] - self.bounds[0]) / self.cell).astype(np.int64) + 1
            if np.prod(dims.astype(float)) <= _TABLE_CELLS:
                self.dims = dims
        (kept,) = self.kept
        keys = self._keys(kept.xyz)
        if keys is None:  # still too fine to pack: the next growth will tell
            return
        cells, first = np.unique(keys, return_index=True)
        self.kept, self.count = [kept.take(np.sort(first))], len(cells)
        self.table, self.occupied = None, cells
        if self.dims is not None:
            self.table = np.zeros(int(np.prod(self.dims)), dtype=bool)
            self.table[cells] = True

    def _keys(self, xyz: np.ndarray) -> np.ndarray | None:
        """One int64 per grid cell, or None when the cells outgrow the packing."""
        if not len(xyz):
            return np.zeros(0, np.int64)
        cells = np.floor((xyz - self.origin) / self.cell).astype(np.int64)
        if self.dims is not None:  # inside the file's box (points a header leaves out: its edge)
            cells = np.clip(cells, 0, self.dims - 1)
            return (cells[:, 0] * self.dims[1] + cells[:, 1]) * self.dims[2] + cells[:, 2]
        half = 1 << (_KEY_BITS - 1)
        cells += half
        if cells.min() < 0 or cells.max() >= 2 * half:
            return None
        return (cells[:, 0] << (2 * _KEY_BITS)) | (cells[:, 1] << _KEY_BITS) | cells[:, 2]


def _check(options: LoadOptions) -> None:
    max_points = getattr(options, "max_points", None)
    method = getattr(options, "subsample", "random")
    if max_points is not None and max_points < 1:
        raise OptionsError(f"max_points must be at least 1, got {max_points}")
    if method not in SUBSAMPLE_METHODS:
        raise OptionsError(
            f"subsample must be one of {', '.join(SUBSAMPLE_METHODS)}, got {method!r}"
        )


def _sample(chunks: Iterable[_Chunk], total: int, budget: int | None, options, bounds=None):
    """(kept points, points read) from a stream of chunks; ``bounds`` (low, high) is the
    box the file's header gives, if any."""
    sampler = _Sampler(total, budget, getattr(options, "subsample", "random"), bounds)
    for chunk in chunks:
        sampler.add(chunk)
    return sampler.result(), sampler.seen


def _budgets(counts: list[int], max_points: int | None) -> list[int | None]:
    """``max_points`` shared between clouds in proportion to their point counts."""
    total = sum(counts)
    if max_points is None or total <= max_points:
        return [None] * len(counts)
    shares = [max_points * count // total for count in counts]
    for index in np.argsort(counts)[::-1][: max_points - sum(shares)]:
        shares[index] += 1
    return shares


# -- building the scene ----------------------------------------------------------------


def _cloud(points: _Chunk, colour_depth: int | None = None) -> trimesh.PointCloud:
    """A PointCloud with 8-bit RGBA colours and intensity metadata from kept points.

    ``colour_depth`` 8 or 16 says how the file stores colours; None decides from the
    kept values (any over 255: 16-bit)."""
    colours, source = None, "none"
    if points.rgb is not None and len(points.rgb):
        rgb = points.rgb.astype(np.uint32)
        depth = colour_depth or (16 if rgb.max() > 255 else 8)
        rgb = rgb >> 8 if depth == 16 else np.minimum(rgb, 255)
        colours = np.column_stack([rgb.astype(np.uint8), np.full(len(rgb), 255, np.uint8)])
        source = "rgb"
    elif points.intensity is not None and len(points.intensity):
        low, high = float(points.intensity.min()), float(points.intensity.max())
        grey = (points.intensity - low) / (high - low) if high > low else np.ones(len(points))
        grey = (64 + 191 * grey).astype(np.uint8)  # never black on a dark background
        colours = np.column_stack([grey, grey, grey, np.full(len(grey), 255, np.uint8)])
        source = "intensity"
    metadata = {"colours": source}
    if points.intensity is not None:
        metadata["intensity"] = points.intensity.astype(np.float32)
    return trimesh.PointCloud(points.xyz, colors=colours, metadata=metadata)


def _add_cloud(scene: trimesh.Scene, name: str, cloud: trimesh.PointCloud, transform) -> str:
    geometry = trimesh.util.unique_name(name, scene.geometry)
    node = trimesh.util.unique_name(name, scene.graph.transforms.node_data)
    scene.geometry[geometry] = cloud
    scene.graph.update(
        frame_from=scene.graph.base_frame, frame_to=node, matrix=transform, geometry=geometry
    )
    return node


def _subsampled_warning(read: int, kept: int, options) -> str:
    method = getattr(options, "subsample", "random")
    return f"subsampled {read:,} points to {kept:,} ({method}, max_points={options.max_points:,})"


# -- E57 ---------------------------------------------------------------------------------


def read_e57(path: Path, options: LoadOptions) -> Scene:
    """Read every scan of an E57 file as a point cloud on a node placed by its pose."""
    import pye57

    _check(options)
    try:
        e57 = pye57.E57(str(path))
    except Exception as exc:  # libE57Format says what is wrong in its own words
        raise read_error(path, "e57", f"not a readable E57 file ({exc})") from exc
    try:
        headers = [e57.get_header(index) for index in range(e57.scan_count)]
        if not headers:
            raise read_error(path, "e57", "the file holds no scans")
        budgets = _budgets([header.point_count for header in headers], options.max_points)
        scene, warnings = trimesh.Scene(), []
        read = kept = 0
        for index, (header, budget) in enumerate(zip(headers, budgets, strict=True)):
            if budget == 0:  # more scans than max_points: the smallest get none
                warnings.append(f"scan {index} left out: max_points leaves it no points")
                read += header.point_count
                continue
            points, seen = _sample(_e57_chunks(e57, header), header.point_count, budget, options)
            read, kept = read + seen, kept + len(points)
            if not len(points):
                warnings.append(f"scan {index} holds no valid points; skipped")
                continue
            name = _e57_text(header.node, "name") or f"scan_{index}"
            _add_cloud(scene, name, _cloud(points, colour_depth=8), _e57_pose(header))
    finally:
        e57.close()
    if options.max_points is not None and kept < read:
        warnings.append(_subsampled_warning(read, kept, options))
    logger.debug("E57 %s: %d scans, %d of %d points", path.name, len(headers), kept, read)
    return Scene(trimesh_scene=scene, warnings=warnings, unit=1.0, up_axis="z")


def _e57_pose(header) -> np.ndarray:
    """A scan's pose (rotation quaternion then translation) as a 4x4 matrix."""
    pose = np.eye(4)
    if header.has_pose():
        pose[:3, :3] = header.rotation_matrix
        pose[:3, 3] = header.translation
    return pose


def _e57_chunks(e57, header) -> Iterator[_Chunk]:
    """A scan's valid points, CHUNK_POINTS at a time, in the scan's own frame."""
    from pye57 import libe57
    from pye57.utils import convert_spherical_to_cartesian

    fields = set(header.point_fields)
    spherical = not {"cartesianX", "cartesianY", "cartesianZ"} <= fields
    coordinates = (
        ("sphericalRange", "sphericalAzimuth", "sphericalElevation")
        if spherical
        else ("cartesianX", "cartesianY", "cartesianZ")
    )
    if not set(coordinates) <= fields:
        raise ValueError(
            f"a scan has neither cartesian nor spherical coordinates: {sorted(fields)}"
        )
    invalid = "sphericalInvalidState" if spherical else "cartesianInvalidState"
    colours = ("colorRed", "colorGreen", "colorBlue")
    wanted = [*coordinates]
    has_rgb = set(colours) <= fields
    has_intensity = "intensity" in fields
    wanted += [*colours] * has_rgb + ["intensity"] * has_intensity + [invalid] * (invalid in fields)
    capacity = max(1, min(CHUNK_POINTS, header.point_count))
    arrays = {
        name: np.empty(capacity, np.int8 if name == invalid else np.float64) for name in wanted
    }
    buffers = libe57.VectorSourceDestBuffer()
    for name in wanted:
        buffers.append(
            libe57.SourceDestBuffer(e57.image_file, name, arrays[name], capacity, True, True)
        )
    colour_range = [_e57_limits(header, name, "color") for name in colours] if has_rgb else []
    intensity_range = _e57_limits(header, "intensity", "intensity") if has_intensity else None
    reader = header.points.reader(buffers)
    try:
        while (count := reader.read()) > 0:
            keep = slice(None) if invalid not in arrays else arrays[invalid][:count] == 0
            xyz = np.column_stack([arrays[name][:count][keep] for name in coordinates])
            if spherical:
                xyz = convert_spherical_to_cartesian(xyz)
            rgb = None
            if has_rgb:
                rgb = np.column_stack(
                    [
                        _scaled(arrays[name][:count][keep], low, high) * 255
                        for name, (low, high) in zip(colours, colour_range, strict=True)
                    ]
                ).round()
                rgb = rgb.astype(np.uint16)
            intensity = None
            if has_intensity:
                low, high = intensity_range
                intensity = _scaled(arrays["intensity"][:count][keep], low, high)
                intensity = intensity.astype(np.float32)
            yield _Chunk(np.ascontiguousarray(xyz, dtype=np.float64), rgb, intensity)
    finally:
        reader.close()


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.ones(len(values))
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _e57_limits(header, field: str, group: str) -> tuple[float, float]:
    """(minimum, maximum) of a field: the scan's ``colorLimits``/``intensityLimits``, else
    the range its prototype declares."""
    node = header.node
    limits = f"{group}Limits"
    try:  # colorRed -> colorLimits/colorRedMinimum, intensity -> intensityLimits/...
        if node.isDefined(limits):
            box = node[limits]
            return _e57_number(box[f"{field}Minimum"]), _e57_number(box[f"{field}Maximum"])
    except Exception:  # a malformed limits box: fall back on the prototype's range
        logger.debug("E57 %s limits unreadable; using the prototype's range", field)
    from pye57 import libe57

    prototype = libe57.StructureNode(header.points.prototype())[field]
    if isinstance(prototype, libe57.ScaledIntegerNode):
        return float(prototype.scaledMinimum()), float(prototype.scaledMaximum())
    if isinstance(prototype, (libe57.IntegerNode, libe57.FloatNode)):
        low, high = float(prototype.minimum()), float(prototype.maximum())
        if np.isfinite(low) and np.isfinite(high) and abs(high - low) < 1e30:
            return low, high
    return (0.0, 255.0) if group == "color" else (0.0, 1.0)


def _e57_number(node) -> float:
    from pye57 import libe57

    if isinstance(node, libe57.ScaledIntegerNode):
        return float(node.scaledValue())
    return float(node.value())


def _e57_text(node, name: str) -> str | None:
    try:
        if not node.isDefined(name):
            return None
        return str(node[name].value()).strip() or None
    except Exception:  # a name that is not a string node is no name
        return None


# -- LAS / LAZ ---------------------------------------------------------------------------


def read_las(path: Path, options: LoadOptions) -> Scene:
    """Read a LAS or LAZ file as one point cloud, in chunks (`laspy.LasReader.chunk_iterator`)."""
    import laspy

    _check(options)
    extension = path.suffix.lstrip(".").lower() or "las"
    try:
        reader = laspy.open(str(path))
    except Exception as exc:  # laspy's reason: bad signature, unknown version, no LAZ backend
        raise read_error(path, extension, f"not a readable LAS/LAZ file ({exc})") from exc
    with reader:
        header = reader.header
        total = int(header.point_count)
        if total == 0:
            raise read_error(path, extension, "the header declares no points")
        low, high = np.asarray(header.mins, float), np.asarray(header.maxs, float)
        # georeferenced coordinates are far from 0: keep them relative to the box's centre
        centre = np.round((low + high) / 2) if np.isfinite(low).all() else np.zeros(3)
        names = set(header.point_format.dimension_names)
        has_rgb = {"red", "green", "blue"} <= names
        box = (low - centre, high - centre) if np.isfinite(low).all() else None

        def chunks():
            for points in reader.chunk_iterator(CHUNK_POINTS):
                xyz = np.column_stack([np.asarray(points[axis]) for axis in "xyz"]) - centre
                rgb = np.column_stack([points.red, points.green, points.blue]) if has_rgb else None
                intensity = np.asarray(points.intensity, np.float32) / 65535.0
                yield _Chunk(xyz, rgb, intensity)

        points, read = _sample(chunks(), total, options.max_points, options, box)
        unit, unit_name = _las_unit(header)
    if not len(points):
        raise read_error(path, extension, "the file holds no points")
    if not points.intensity.any():
        points.intensity = None  # a LAS without intensity writes zeros
    warnings = []
    if options.max_points is not None and len(points) < read:
        warnings.append(_subsampled_warning(read, len(points), options))
    if read < total:
        warnings.append(f"the file ends after {read:,} of the {total:,} points its header declares")
    placement = np.eye(4)
    placement[:3, 3] = centre
    scene = trimesh.Scene()
    _add_cloud(scene, path.stem, _cloud(points), placement)
    logger.debug("LAS %s: %d of %d points, unit %s", path.name, len(points), read, unit_name)
    return Scene(trimesh_scene=scene, warnings=warnings, unit=unit, up_axis="z")


_GEOTIFF_UNITS = {9002: 0.3048, 9003: 1200 / 3937, 9001: 1.0}
"""EPSG linear unit codes in GeoTIFF's ProjLinearUnitsGeoKey: foot, US survey foot, metre."""
_WKT_UNIT = re.compile(r'(?:LENGTHUNIT|UNIT)\s*\[\s*"([^"]+)"\s*,\s*([0-9.eE+-]+)')
_WKT_ELLIPSOID = re.compile(r"(?:ELLIPSOID|SPHEROID)\s*\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]")
_ANGLES = ("degree", "radian", "grad", "arc", "second", "minute")


def _las_unit(header) -> tuple[float | None, str]:
    """(metres per unit, how it was found) from the CRS: GeoTIFF's linear-units key, else
    the WKT's first linear unit (the projected CRS's; a compound CRS's vertical unit comes
    after it and is not used); (None, ...) when neither says (the format's metre)."""
    records = [*header.vlrs, *(getattr(header, "evlrs", None) or [])]
    for vlr in records:
        for key in getattr(vlr, "geo_keys", None) or []:
            if key.id == 3076 and key.value_offset in _GEOTIFF_UNITS:
                return _GEOTIFF_UNITS[key.value_offset], f"GeoTIFF unit {key.value_offset}"
    for vlr in records:
        text = getattr(vlr, "string", None)
        if not isinstance(text, str):
            continue
        linear = [
            (name.lower(), float(factor))
            for name, factor in _WKT_UNIT.findall(_WKT_ELLIPSOID.sub("", text))
            if not name.lower().startswith(_ANGLES)
        ]
        if linear and linear[0][1] > 0:
            name, factor = linear[0]
            if "foot" in name or "feet" in name:  # some writers give a foot the factor 1
                factor = factor if factor < 0.9 else _GEOTIFF_UNITS[9003 if "us" in name else 9002]
            return factor, f"WKT unit {name!r}"
    return None, "none declared"


def write_las(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write every placed point cloud as one LAS 1.2 file (LAZ when the name ends in
    .laz), in metres, Z-up: point format 2 with colours when any cloud has RGB, else 0;
    intensity from ``cloud.metadata["intensity"]``. Meshes are left out with a warning."""
    import laspy

    extension = path.suffix.lstrip(".").lower() or "las"
    placed = placed_meshes(scene.trimesh_scene)
    clouds = [
        (scene.trimesh_scene.geometry[name], transform)
        for _, name, transform in placed
        if isinstance(scene.trimesh_scene.geometry[name], trimesh.PointCloud)
        and len(scene.trimesh_scene.geometry[name].vertices)
    ]
    meshes = sum(
        isinstance(scene.trimesh_scene.geometry[name], trimesh.Trimesh) for _, name, _ in placed
    )
    if not clouds:
        raise write_error(
            path, extension, "the scene has no points to write (LAS holds points only)"
        )
    if meshes:
        scene.warn(f"{extension.upper()} keeps only points: {meshes} mesh(es) left out")
    # 1. the header: a box around every placed point, millimetre steps where they fit
    low = np.min([_world(cloud.vertices, t).min(axis=0) for cloud, t in clouds], axis=0)
    high = np.max([_world(cloud.vertices, t).max(axis=0) for cloud, t in clouds], axis=0)
    with_rgb = any(has_point_colours(cloud) for cloud, _ in clouds)
    header = laspy.LasHeader(point_format=2 if with_rgb else 0, version="1.2")
    header.offsets = np.floor(low)
    header.scales = np.full(3, max(0.001, float(np.max(high - low)) / 2e9))
    # 2. the points, chunk by chunk
    with laspy.open(str(path), mode="w", header=header) as writer:
        for cloud, transform in clouds:
            for start in range(0, len(cloud.vertices), CHUNK_POINTS):
                window = slice(start, start + CHUNK_POINTS)
                writer.write_points(_las_points(header, cloud, transform, window, with_rgb))
    return [path]


def _world(vertices: np.ndarray, transform: np.ndarray) -> np.ndarray:
    return np.asarray(vertices, np.float64) @ transform[:3, :3].T + transform[:3, 3]


def _las_points(header, cloud: trimesh.PointCloud, transform, window: slice, with_rgb: bool):
    import laspy

    xyz = _world(cloud.vertices[window], transform)
    points = laspy.ScaleAwarePointRecord.zeros(len(xyz), header=header)
    points.x, points.y, points.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    intensity = cloud.metadata.get("intensity")
    if intensity is not None and len(intensity) == len(cloud.vertices):
        points.intensity = np.round(np.clip(intensity[window], 0, 1) * 65535).astype(np.uint16)
    if with_rgb and has_point_colours(cloud):
        colours = np.asarray(cloud.colors)[window]
        if colours.shape == (len(xyz), 4):
            rgb = colours[:, :3].astype(np.uint16) * 257  # 8-bit to LAS's 16-bit colour
            points.red, points.green, points.blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return points


# -- PTS and XYZ text --------------------------------------------------------------------


def read_pts(path: Path, options: LoadOptions) -> Scene:
    """Read a Leica PTS file: a count line, then ``x y z [intensity [r g b]]`` per line
    (files that join several scans repeat the count line before each)."""
    return _read_text(path, options, "pts")


def read_xyz(path: Path, options: LoadOptions) -> Scene:
    """Read an XYZ text file: ``x y z [r g b]`` per line (spaces, commas or semicolons;
    lines starting with ``#`` or ``//`` are comments)."""
    return _read_text(path, options, "xyz")


def _read_text(path: Path, options: LoadOptions, extension: str) -> Scene:
    _check(options)
    total = _count_lines(path)
    warnings: list[str] = []
    with path.open("r", encoding="latin-1") as handle:
        if extension == "pts":  # the count line: skipped here so chunks parse in one go
            start = handle.tell()
            if not handle.readline().strip().isdigit():
                handle.seek(start)
        chunks = _text_chunks(path, handle, extension, warnings)
        points, read = _sample(chunks, total, options.max_points, options)
    if not len(points):
        raise read_error(path, extension, "the file holds no point lines")
    if options.max_points is not None and len(points) < read:
        warnings.append(_subsampled_warning(read, len(points), options))
    scene = trimesh.Scene()
    _add_cloud(scene, path.stem, _cloud(points, colour_depth=8), np.eye(4))
    return Scene(trimesh_scene=scene, warnings=warnings)


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            count += block.count(b"\n")
    return count + 1


_SEPARATORS = str.maketrans({",": " ", ";": " ", "\t": " "})


def _text_chunks(path: Path, handle, extension: str, warnings: list[str]) -> Iterator[_Chunk]:
    columns = None
    dropped = 0
    while lines := list(itertools.islice(handle, CHUNK_POINTS)):
        rows = [line.translate(_SEPARATORS) for line in lines]
        rows = [row for row in rows if row.strip() and not row.lstrip().startswith(("#", "//"))]
        values = _parse_rows(path, extension, rows)
        if values is None:  # count lines (PTS) or ragged lines: split them one by one
            values, dropped_here = _parse_ragged(rows, columns)
            dropped += dropped_here
        if not len(values):
            continue
        if columns is None:
            columns = values.shape[1]
        if values.shape[1] != columns:
            raise read_error(
                path, extension, f"lines switch from {columns} to {values.shape[1]} values"
            )
        yield _text_chunk(values, extension)
    if dropped:
        warnings.append(f"ignored {dropped:,} lines that are not points (counts, headers)")


def _parse_rows(path: Path, extension: str, rows: list[str]) -> np.ndarray | None:
    if not rows:
        return np.zeros((0, 3))
    try:
        values = np.loadtxt(rows, ndmin=2, dtype=np.float64)
    except ValueError:
        return None
    if values.shape[1] < 3:
        return None
    return values


def _parse_ragged(rows: list[str], columns: int | None) -> tuple[np.ndarray, int]:
    """The rows that hold a point (three or more numbers, as many as the others), and how
    many were not."""
    parsed = []
    for row in rows:
        words = row.split()
        if len(words) < 3 or (columns is not None and len(words) != columns):
            continue
        try:
            parsed.append([float(word) for word in words])
        except ValueError:
            continue
    if parsed and columns is None:
        columns = max(set(map(len, parsed)), key=[len(p) for p in parsed].count)
        parsed = [p for p in parsed if len(p) == columns]
    values = np.asarray(parsed, dtype=np.float64).reshape(-1, columns or 3)
    return values, len(rows) - len(values)


def _text_chunk(values: np.ndarray, extension: str) -> _Chunk:
    xyz = np.ascontiguousarray(values[:, :3])
    columns = values.shape[1]
    intensity = rgb = None
    if extension == "pts" and columns in (4, 7):
        intensity = _pts_intensity(values[:, 3])
    first = 4 if extension == "pts" and columns >= 7 else 3
    if columns >= first + 3:
        colours = values[:, first : first + 3]
        if colours.min() >= 0:  # negative values are normals, not colours
            if colours.max() <= 1 and not np.array_equal(colours, np.round(colours)):
                colours = colours * 255  # colours written as 0..1 floats
            rgb = np.clip(np.round(colours), 0, 255).astype(np.uint16)
    return _Chunk(xyz, rgb, intensity)


def _pts_intensity(raw: np.ndarray) -> np.ndarray:
    """PTS intensity in 0..1: Leica writes -2048..2047; other tools 0..1, 0..255 or more."""
    if raw.min() < 0:
        scaled = (raw + 2048) / 4095
    else:
        top = raw.max()
        scaled = raw / next(limit for limit in (1.0, 255.0, 4095.0, 65535.0, top) if top <= limit)
    return np.clip(scaled, 0, 1).astype(np.float32)


READERS = {"e57": read_e57, "las": read_las, "laz": read_las, "pts": read_pts, "xyz": read_xyz}
WRITERS = {"las": write_las, "laz": write_las}
