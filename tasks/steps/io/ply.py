"""PLY in and out: a triangle mesh, or a point cloud (kept as `trimesh.PointCloud`).

The header is read here first (every element and property well formed, binary payload
at least as long as the header promises), so fuzzed or truncated files fail with a
reason instead of a KeyError deep inside the parser. Header lines that are neither
keywords nor comments (old Blender exports write ``Created by Blender3D 247 ...`` bare)
are skipped, as assimp and Blender do, and trimesh is handed a clean header.

An ASCII body is checked line by line against the header, and a damaged attribute is
dropped with a warning that names it: a colour cut short on some vertex lines, faces
naming a vertex the file does not have, face lines missing at the end. Missing
coordinates or vertex lines fail the read. A binary body is checked only for length.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import (
    LenientResolver,
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
_FACE_INDICES = ("vertex_indices", "vertex_index")
_REQUIRED = {"vertex": ("x", "y", "z")}


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)
    """(name, header line) per property, in order."""
    lists: set[str] = field(default_factory=set)
    """Names of the list properties."""
    fixed_bytes: int = 0
    list_count_bytes: int = 0


@dataclass
class _Header:
    encoding: str
    elements: list[_Element]
    comments: list[str]
    body_start: int

    def text(self) -> str:
        """The header as trimesh expects it: keywords and comments only."""
        lines = ["ply", f"format {self.encoding} 1.0", *self.comments]
        for element in self.elements:
            lines.append(f"element {element.name} {element.count}")
            lines.extend(line for _, line in element.properties)
        return "\n".join([*lines, "end_header", ""])


def read_ply(path: Path, options: LoadOptions) -> Scene:
    """Read an ASCII or binary PLY mesh or point cloud into a Scene."""
    data = path.read_bytes()
    header = _read_header(path, data)
    body = data[header.body_start :]
    warnings: list[str] = []
    if header.encoding == "ascii":
        body = _checked_ascii_body(path, header, body, warnings)
    clean = header.text().encode("utf-8") + body
    try:
        loaded = trimesh.load_scene(
            io.BytesIO(clean), file_type="ply", resolver=LenientResolver(str(path))
        )
    except IndexError as exc:
        # only a binary body gets here with a face naming a vertex it does not have
        vertices = next((e.count for e in header.elements if e.name == "vertex"), 0)
        raise read_error(
            path, "ply", f"a face names a vertex beyond the {vertices:,} the header declares"
        ) from exc
    return Scene(trimesh_scene=loaded, warnings=warnings)


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
        geometry = clouds[0] if len(clouds) == 1 else _joined_clouds(clouds)
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


def _joined_clouds(clouds: list[trimesh.PointCloud]) -> trimesh.PointCloud:
    """One cloud of several (an E57's scans, already placed), colours kept when all have
    them: PLY holds one vertex element."""
    coloured = all(getattr(cloud.visual, "kind", None) == "vertex" for cloud in clouds)
    return trimesh.PointCloud(
        vertices=np.vstack([cloud.vertices for cloud in clouds]),
        colors=np.vstack([cloud.colors for cloud in clouds]) if coloured else None,
    )


def _read_header(path: Path, data: bytes) -> _Header:
    head = data[:_MAX_HEADER_BYTES]
    end = head.find(b"end_header")
    if not head.startswith(b"ply"):
        raise read_error(path, "ply", "missing 'ply' magic line")
    if end < 0:
        raise read_error(path, "ply", "header is truncated (no 'end_header' line)")
    line_end = head.find(b"\n", end)
    body_start = len(data) if line_end < 0 else line_end + 1
    try:
        text = head[:end].decode("utf-8")
    except UnicodeDecodeError:  # comments written in a Windows code page
        text = head[:end].decode("latin-1")
    encoding, elements, comments = None, [], []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        words = line.split()
        if not words:
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
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property":
            _add_property(path, words, line, number, elements)
        elif words[0] == "comment":
            comments.append(" ".join(words))
        # anything else is text an exporter wrote as a comment without the keyword
        # (Blender 2.4x: "Created by Blender3D 247 ..."), or obj_info: readers skip it
    if encoding is None:
        raise read_error(path, "ply", "header has no 'format' line")
    if encoding != "ascii":
        body = len(data) - body_start
        needed = sum(e.count * (e.fixed_bytes + e.list_count_bytes) for e in elements)
        if needed > body:
            raise read_error(
                path,
                "ply",
                f"header promises at least {needed:,} bytes of data but the file has {body:,}",
            )
    return _Header(encoding, elements, comments, body_start)


def _add_property(path: Path, words: list[str], line: str, number: int, elements) -> None:
    if not elements:
        raise read_error(path, "ply", f"property before any element on header line {number}")
    element = elements[-1]
    valid_name = len(words) >= 3 and words[-1].isprintable() and words[-1].strip()
    if words[1:2] == ["list"]:
        if len(words) != 5 or words[2] not in _TYPE_BYTES or words[3] not in _TYPE_BYTES:
            raise read_error(
                path, "ply", f"malformed list property on header line {number}: {line!r}"
            )
        element.list_count_bytes += _TYPE_BYTES[words[2]]
        element.lists.add(words[4])
    elif len(words) != 3 or words[1] not in _TYPE_BYTES or not valid_name:
        raise read_error(path, "ply", f"malformed property on header line {number}: {line!r}")
    else:
        element.fixed_bytes += _TYPE_BYTES[words[1]]
    element.properties.append((words[-1], " ".join(words)))


def _checked_ascii_body(path: Path, header: _Header, body: bytes, warnings: list[str]) -> bytes:
    """The ASCII body, with the lines and properties a damaged file cannot give dropped
    (each with a warning); the header's counts are updated to match."""
    lines = [line for line in body.decode("latin-1").splitlines() if line.strip()]
    position, changed, kept_lines = 0, False, []
    vertices = 0
    for element in header.elements:
        rows = [line.split() for line in lines[position : position + element.count]]
        position += element.count
        if len(rows) < element.count:
            if element.name in _REQUIRED:
                raise read_error(
                    path,
                    "ply",
                    f"the file ends after {len(rows):,} of the {element.count:,} "
                    f"{element.name} lines its header declares",
                )
            warnings.append(
                f"the file ends after {len(rows):,} of the {element.count:,} {element.name} "
                f"lines its header declares; the missing {element.count - len(rows):,} "
                f"{element.name}s are not read"
            )
        rows, element_changed = _checked_rows(path, element, rows, vertices, warnings)
        changed = changed or element_changed or len(rows) != element.count
        element.count = len(rows)
        if element.name == "vertex":
            vertices = element.count
        kept_lines.extend(" ".join(row) for row in rows)
    if position < len(lines):
        warnings.append(
            f"ignored {len(lines) - position:,} lines after the elements the header declares"
        )
    if not changed:
        return body
    return ("\n".join(kept_lines) + "\n").encode("latin-1")


def _checked_rows(path, element: _Element, rows, vertices: int, warnings: list[str]):
    """(rows, whether any changed): properties some rows stop short of are dropped from
    every row (the whole colour, normal or UV group with them), extra values are cut, and
    face rows that are cut short or name a vertex the file does not have are dropped."""
    names = [name for name, _ in element.properties]
    split = [_split(row, names, element.lists) for row in rows]
    index_name = next((n for n in _FACE_INDICES if n in element.lists), None)
    is_face = element.name == "face" and index_name is not None
    kept, changed = set(names), False
    short = sum(len(values) < len(names) for values, _ in split)
    if short:
        lost = set(names[min(len(values) for values, _ in split) :])
        lost |= {name for group in _GROUPS if lost & group for name in group & kept}
        lost_text = ", ".join(name for name in names if name in lost)
        if lost & set(_REQUIRED.get(element.name, ())):
            raise read_error(path, "ply", f"{short:,} {element.name} lines stop before {lost_text}")
        if is_face and index_name in lost:
            split = [entry for entry in split if len(entry[0]) == len(names)]
            warnings.append(f"ignored {short:,} face lines that stop before their last value")
        else:
            kept -= lost
            warnings.append(
                f"ignored {element.name} {'property' if len(lost) == 1 else 'properties'} "
                f"{lost_text}: {short:,} of {len(rows):,} {element.name} lines stop before "
                f"{'it' if len(lost) == 1 else 'them'}"
            )
            element.properties = [p for p in element.properties if p[0] in kept]
            element.lists &= kept
        changed = True
    longer = sum(extra > 0 for _, extra in split)
    if longer:
        warnings.append(f"ignored extra values at the end of {longer:,} {element.name} lines")
        changed = True
    if is_face:
        position = names.index(index_name)
        before = len(split)
        split = [entry for entry in split if _indices_below(entry[0][position][1:], vertices)]
        if len(split) < before:
            warnings.append(
                f"ignored {before - len(split):,} of {before:,} faces that name a vertex "
                f"beyond the file's {vertices:,}"
            )
            changed = True
    if not changed:
        return rows, False
    return [
        [
            value
            for name, values in zip(names, entry[0], strict=False)
            if name in kept
            for value in values
        ]
        for entry in split
    ], True


# properties that mean nothing without each other: losing one drops the group
_GROUPS = (
    {"red", "green", "blue", "alpha"},
    {"diffuse_red", "diffuse_green", "diffuse_blue", "diffuse_alpha"},
    {"nx", "ny", "nz"},
    {"s", "t"},
    {"u", "v"},
    {"texture_u", "texture_v"},
)


def _split(row: list[str], names: list[str], lists: set[str]):
    """(the row's values per property, as far as it holds them in full; extra values)."""
    values, index = [], 0
    for name in names:
        if name in lists:
            if index >= len(row) or not row[index].isdigit():
                break
            size = 1 + int(row[index])
        else:
            size = 1
        if index + size > len(row):
            break
        values.append(row[index : index + size])
        index += size
    extra = len(row) - index if len(values) == len(names) else 0
    return values, extra


def _indices_below(indices: list[str], vertices: int) -> bool:
    try:
        return all(0 <= int(value) < vertices for value in indices)
    except ValueError:
        return False


READERS = {"ply": read_ply}
WRITERS = {"ply": write_ply}
