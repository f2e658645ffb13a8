"""OFF (Object File Format) in and out: one ASCII polygon mesh.

The header's vertex and face counts are checked against the file size before
anything is allocated: a corrupt header can claim hundreds of billions of vertices.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.steps.io.common import load_with_trimesh, merged_mesh, read_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

# the shortest ASCII vertex is "0 0 0\n" and the shortest face "3 0 1 2\n"
_MIN_VERTEX_BYTES = 6
_MIN_FACE_BYTES = 8


def read_off(path: Path, options: LoadOptions) -> Scene:
    """Read an ASCII OFF (also COFF/NOFF headers) into a one-mesh Scene."""
    vertices, faces = _check_header(path)
    try:
        return Scene(trimesh_scene=load_with_trimesh(path, "off"))
    except ValueError as exc:
        if "reshape" not in str(exc):
            raise
        raise read_error(
            path,
            "off",
            f"the file holds fewer numbers than its header's {vertices:,} vertices and"
            f" {faces:,} faces need (truncated?)",
        ) from exc


def write_off(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write every placed mesh, in world coordinates, as one ASCII OFF."""
    from trimesh.exchange.off import export_off

    path.write_text(export_off(merged_mesh(scene, path, "off")))
    return [path]


def _check_header(path: Path) -> tuple[int, int]:
    """The header's (vertex count, face count), checked against the file size."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4096)
    if b"\0" in head:
        raise read_error(path, "off", "binary OFF is not supported (only ASCII)")
    words = [
        word
        for line in head.decode("latin-1").splitlines()
        for word in line.split("#", 1)[0].split()
    ]
    keyword = re.match(r"[A-Z]*OFF", words[0].upper()) if words else None
    if keyword is None:
        raise read_error(path, "off", "missing 'OFF' header")
    if keyword.end() < len(words[0]):  # "OFF8 6 12": the count written against the keyword
        words[:1] = [words[0][: keyword.end()], words[0][keyword.end() :]]
    # counts follow the keyword, on its line or the next
    counts = words[1:4]
    if len(counts) < 2 or not all(word.lstrip("-").isdigit() for word in counts[:2]):
        raise read_error(path, "off", "header has no vertex and face counts")
    vertices, faces = int(counts[0]), int(counts[1])
    if vertices < 0 or faces < 0:
        raise read_error(path, "off", "header has negative counts")
    needed = vertices * _MIN_VERTEX_BYTES + faces * _MIN_FACE_BYTES
    if needed > size:
        raise read_error(
            path,
            "off",
            f"header declares {vertices:,} vertices and {faces:,} faces, "
            f"which cannot fit in a {size:,}-byte file",
        )
    return vertices, faces


READERS = {"off": read_off}
WRITERS = {"off": write_off}
