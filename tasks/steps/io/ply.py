"""PLY in and out: a triangle mesh, or a point cloud (kept as `trimesh.PointCloud`).

The header is validated first (every element and property well formed, binary
payload at least as long as the header promises) so fuzzed or truncated files fail
with a reason instead of a KeyError deep inside the parser.
"""

from __future__ import annotations

from pathlib import Path

import trimesh

from tasks.steps.io.common import (
    load_with_trimesh,
    merged_mesh,
    placed_meshes,
    read_error,
    write_error,
)
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

_TYPE_BYTES = {
    **dict.fromkeys(("char", "uchar", "int8", "uint8"), 1),
    **dict.fromkeys(("short", "ushort", "int16", "uint16"), 2),
    **dict.fromkeys(("int", "uint", "int32", "uint32", "float", "float32"), 4),
    **dict.fromkeys(("double", "float64"), 8),
}
_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
_MAX_HEADER_BYTES = 1 << 16


def read_ply(path: Path, options: LoadOptions) -> Scene:
    """Read an ASCII or binary PLY mesh or point cloud into a Scene."""
    _check_header(path)
    return Scene(trimesh_scene=load_with_trimesh(path, "ply"))


def write_ply(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write every placed mesh as one binary PLY; a scene of point clouds only is written
    as one point cloud."""
    from trimesh.exchange.ply import export_ply

    placed = placed_meshes(scene.trimesh_scene)
    clouds = [
        scene.trimesh_scene.geometry[name].copy().apply_transform(transform)
        for _, name, transform in placed
        if isinstance(scene.trimesh_scene.geometry[name], trimesh.PointCloud)
    ]
    has_triangles = any(
        isinstance(scene.trimesh_scene.geometry[name], trimesh.Trimesh) for _, name, _ in placed
    )
    if has_triangles:
        geometry = merged_mesh(scene, path, "ply")
    elif clouds:
        geometry = (
            clouds[0]
            if len(clouds) == 1
            else trimesh.PointCloud(
                vertices=trimesh.util.vstack_empty([cloud.vertices for cloud in clouds])
            )
        )
    else:
        raise write_error(path, "ply", "the scene has no triangles or points to write")
    path.write_bytes(
        export_ply(
            geometry,
            encoding="binary",
            vertex_normal=options.include_normals if has_triangles else None,
        )
    )
    return [path]


def _check_header(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(_MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply"):
        raise read_error(path, "ply", "missing 'ply' magic line")
    if end < 0:
        raise read_error(path, "ply", "header is truncated (no 'end_header' line)")
    lines = head[:end].decode("latin-1").splitlines()
    encoding, elements = None, []  # elements: [name, count, fixed bytes, list count bytes]
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise read_error(path, "ply", f"unknown format on header line {number}: {line!r}")
            encoding = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise read_error(
                    path, "ply", f"malformed element on header line {number}: {line!r}"
                )
            elements.append([words[1], int(words[2]), 0, 0])
        elif words[0] == "property":
            _check_property(path, words, line, number, elements)
        else:
            raise read_error(path, "ply", f"unexpected header line {number}: {line!r}")
    if encoding is None:
        raise read_error(path, "ply", "header has no 'format' line")
    if encoding != "ascii":
        body = path.stat().st_size - (end + len(b"end_header") + 1)
        needed = sum(count * (fixed + listed) for _, count, fixed, listed in elements)
        if needed > body:
            raise read_error(
                path,
                "ply",
                f"header promises at least {needed:,} bytes of data but the file has {body:,}",
            )


def _check_property(path: Path, words: list[str], line: str, number: int, elements) -> None:
    if not elements:
        raise read_error(path, "ply", f"property before any element on header line {number}")
    valid_name = len(words) >= 3 and words[-1].isprintable() and words[-1].strip()
    if words[1:2] == ["list"]:
        if len(words) != 5 or words[2] not in _TYPE_BYTES or words[3] not in _TYPE_BYTES:
            raise read_error(
                path, "ply", f"malformed list property on header line {number}: {line!r}"
            )
        elements[-1][3] += _TYPE_BYTES[words[2]]
    elif len(words) != 3 or words[1] not in _TYPE_BYTES or not valid_name:
        raise read_error(path, "ply", f"malformed property on header line {number}: {line!r}")
    else:
        elements[-1][2] += _TYPE_BYTES[words[1]]


READERS = {"ply": read_ply}
WRITERS = {"ply": write_ply}
