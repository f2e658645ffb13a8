"""What every format module shares: one-line errors, texture look-up, scene checks.

Display names come from the registry (`format_name`, re-exported here for callers).
This module imports trimesh: `isolate` and the package's `load` and `save` import it
only once they read or write, and the registry never does, so asking which formats
exist stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.errors import ReadError, WriteError
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.io.registry import format_name
from tasks.steps.scene import Scene

Reader = Callable[[Path, LoadOptions], Scene]
"""``reader(path, options) -> Scene``; raises ReadError or lets the registry wrap the rest."""

Writer = Callable[[Scene, Path, SaveOptions], list[Path]]
"""``writer(scene, path, options) -> every file written``."""


def read_error(path: Path | str, extension: str, reason: str) -> ReadError:
    """``cannot read 'x.stl' as STL: <reason>`` (one line)."""
    return ReadError(
        f"cannot read '{Path(path).name}' as {format_name(extension)}: {_one_line(reason)}"
    )


def write_error(path: Path | str, extension: str, reason: str) -> WriteError:
    """``cannot write 'x.fbx' as FBX: <reason>`` (one line)."""
    return WriteError(
        f"cannot write '{Path(path).name}' as {format_name(extension)}: {_one_line(reason)}"
    )


def describe(exc: BaseException) -> str:
    """A one-line reason from a library exception that did not say much by itself."""
    message = str(exc).strip()
    if isinstance(exc, MemoryError):
        return "the file needs more memory than this machine has"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"referenced file '{Path(exc.filename).name}' is missing"
    if isinstance(exc, (KeyError, IndexError, AttributeError, TypeError)) or not message:
        ours = _raised_in_our_code(exc)
        if ours:  # our own slip, not the file's: say so, so it is reported and fixed
            return (
                f"a bug in this service ({type(exc).__name__}: {message or 'no detail'}, at {ours})"
            )
        # these come from a parser tripping on unexpected content, not from a check
        return f"malformed file ({type(exc).__name__}: {message or 'no detail'})"
    return message


_TASKS_PACKAGE = Path(__file__).resolve().parents[2]


def _raised_in_our_code(exc: BaseException) -> str | None:
    """`io/gltf.py:123` when the innermost frame of `exc` is in the `tasks` package."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    if not where.is_relative_to(_TASKS_PACKAGE):
        return None
    return f"{where.relative_to(_TASKS_PACKAGE).as_posix()}:{tb.tb_lineno}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise_reference(name: str) -> str:
    """A file reference as written by Windows tools (``.\\tex\\a.jpg``) in POSIX form."""
    name = name.strip().strip('"').replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def find_file(directory: Path, reference: str) -> Path | None:
    """The file a model references, looked up next to it; also tries the bare file name and a
    case-insensitive match because exporters often write absolute or differently cased paths.

    Only files inside `directory` are found: an uploaded model naming `/proc/self/environ`
    or `../../x` must not get the worker's files read into its outputs."""
    reference = normalise_reference(reference)
    inside = Path(directory).resolve()
    candidates = [directory / reference, directory / Path(reference).name]
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve().is_relative_to(inside):
            return candidate
    wanted = Path(reference).name.lower()
    if directory.is_dir():
        for entry in os.scandir(directory):
            if entry.is_file() and entry.name.lower() == wanted:
                return Path(entry.path)
    return None


class LenientResolver(trimesh.resolvers.FilePathResolver):
    """trimesh's file resolver that also understands backslash and case-mismatched references."""

    def get(self, name: str) -> bytes:
        found = find_file(Path(self.parent), name)
        if found is None:
            raise FileNotFoundError(2, "missing referenced file", name)
        return found.read_bytes()


def geometry_counts(scene: trimesh.Scene) -> tuple[int, int]:
    """(placed triangles, placed points) over every node that carries geometry."""
    triangles = points = 0
    for node in scene.graph.nodes_geometry:
        geometry = scene.geometry.get(scene.graph[node][1])
        if isinstance(geometry, trimesh.Trimesh):
            triangles += len(geometry.faces)
        elif isinstance(geometry, trimesh.PointCloud):
            points += len(geometry.vertices)
    return triangles, points


def has_point_colours(cloud: trimesh.PointCloud) -> bool:
    """Whether a point cloud's colours were read from its file's RGB: not greys made from
    intensity (``cloud.metadata["colours"]``, set by the point-cloud readers), nor
    trimesh's default colour for a cloud that has none."""
    if "colours" in cloud.metadata:
        return cloud.metadata["colours"] == "rgb"
    return getattr(cloud.visual, "kind", None) == "vertex"


def require_geometry(scene: Scene, path: Path, extension: str) -> Scene:
    """Raise ReadError if a file parsed but gave neither triangles nor points."""
    triangles, points = geometry_counts(scene.trimesh_scene)
    if triangles == 0 and points == 0:
        raise read_error(path, extension, "the file parsed but contains no triangles or points")
    return scene


def placed_meshes(scene: trimesh.Scene) -> list[tuple[str, str, np.ndarray]]:
    """(node, geometry name, 4x4 world transform) for every node that carries geometry."""
    placed = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        placed.append((node, name, np.asarray(transform, dtype=np.float64)))
    return placed


def material_image(geometry) -> object | None:
    """The base-colour texture (a PIL image) of a trimesh geometry, or None."""
    material = getattr(getattr(geometry, "visual", None), "material", None)
    if material is None:
        return None
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    return image


def material_colour(geometry) -> np.ndarray:
    """The base colour of a trimesh geometry as RGBA floats in 0..1 (grey when it has none)."""
    visual = getattr(geometry, "visual", None)
    material = getattr(visual, "material", None)
    if material is not None:
        factor = getattr(material, "baseColorFactor", None)
        if factor is None and hasattr(material, "diffuse"):
            factor = material.diffuse
        if factor is not None:
            factor = np.asarray(factor)
            # trimesh keeps colours as uint8; floats appear when a reader set them directly
            scale = 255.0 if factor.dtype.kind in "ui" or factor.max() > 1.0 else 1.0
            rgba = np.ones(4)
            rgba[: len(factor)] = factor[:4] / scale
            return rgba
    if visual is not None and getattr(visual, "kind", None) in ("face", "vertex"):
        colours = np.asarray(visual.main_color, dtype=np.float64)
        return colours / 255.0
    return np.array([0.8, 0.8, 0.8, 1.0])


def unkept_content(scene: Scene, format_name: str, holds: frozenset[str]) -> list[str]:
    """Warnings naming what the scene has that a format cannot hold (`FormatSpec.holds`):
    ``STL keeps no materials: 5 material(s) left out``. Empty when nothing is lost."""
    ts = scene.trimesh_scene
    placed = [ts.graph[node][1] for node in ts.graph.nodes_geometry]
    used = [ts.geometry[name] for name in dict.fromkeys(placed)]
    materials, images = set(), set()
    for geometry in used:
        material = getattr(getattr(geometry, "visual", None), "material", None)
        if material is None or getattr(geometry.visual, "kind", None) != "texture":
            continue
        materials.add(id(material))
        for key in _MAPS:
            image = getattr(material, key, None)
            if image is not None:
                images.add(id(image))
    found = {
        "materials": (len(materials), "material(s)"),
        "textures": (len(images), "texture image(s)"),
        "instances": (len(placed) - len(used), "repeated placement(s) written as copies"),
        "points": (sum(isinstance(g, trimesh.PointCloud) for g in used), "point cloud(s)"),
    }
    return [
        f"{format_name} keeps no {kind}: {count} {what} left out"
        if kind != "instances"
        else f"{format_name} keeps no instances: {count} {what}"
        for kind, (count, what) in found.items()
        if count and kind not in holds
    ]


_MAPS = (
    "baseColorTexture",
    "metallicRoughnessTexture",
    "normalTexture",
    "occlusionTexture",
    "emissiveTexture",
    "image",
)


def merged_mesh(scene: Scene, path: Path, extension: str) -> trimesh.Trimesh:
    """Every placed mesh in world coordinates as one Trimesh, for single-mesh formats (STL,
    OFF, PLY). Point clouds are left out; WriteError if no triangles remain."""
    meshes = [
        geometry.copy().apply_transform(transform)
        for _, name, transform in placed_meshes(scene.trimesh_scene)
        if isinstance(geometry := scene.trimesh_scene.geometry[name], trimesh.Trimesh)
        and len(geometry.faces)
    ]
    if not meshes:
        raise write_error(path, extension, "the scene has no triangles to write")
    return meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)


def load_with_trimesh(path: Path, file_type: str, **kwargs) -> trimesh.Scene:
    """trimesh's reader for one file, with the lenient texture resolver."""
    with path.open("rb") as handle:
        return trimesh.load_scene(
            handle, file_type=file_type, resolver=LenientResolver(str(path)), **kwargs
        )
