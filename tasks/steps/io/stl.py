"""STL in and out (ASCII and binary): one triangle soup, no names, materials or tree.

Binary files are checked against their declared triangle count first, so a
truncated download fails with the numbers instead of a NumPy reshape error.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tasks.steps.io.common import load_with_trimesh, merged_mesh, read_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

_HEADER_BYTES = 84
_TRIANGLE_BYTES = 50


def read_stl(path: Path, options: LoadOptions) -> Scene:
    """Read an ASCII or binary STL into a one-mesh Scene."""
    _check_binary_size(path)
    return Scene(trimesh_scene=load_with_trimesh(path, "stl"))


def write_stl(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write every placed mesh, in world coordinates, as one binary STL."""
    from trimesh.exchange.stl import export_stl

    path.write_bytes(export_stl(merged_mesh(scene, path, "stl")))
    return [path]


def _check_binary_size(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES:
        if not head.lstrip().lower().startswith(b"solid"):
            raise read_error(path, "stl", f"file is too short ({size} bytes) to be an STL")
        return
    (declared,) = struct.unpack_from("<I", head, 80)
    expected = _HEADER_BYTES + _TRIANGLE_BYTES * declared
    if size == expected:
        return
    # an ASCII file starts with "solid"; some binary exporters write that too, so the
    # declared count decides only when the text is not ASCII
    if head.lstrip().lower().startswith(b"solid") and _looks_ascii(path):
        return
    raise read_error(
        path,
        "stl",
        f"binary header declares {declared:,} triangles ({expected:,} bytes) "
        f"but the file has {size:,} bytes",
    )


def _looks_ascii(path: Path) -> bool:
    with path.open("rb") as handle:
        sample = handle.read(4096)
    return b"facet" in sample and b"\0" not in sample


READERS = {"stl": read_stl}
WRITERS = {"stl": write_stl}
