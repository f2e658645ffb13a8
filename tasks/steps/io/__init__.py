"""Import and export: a file becomes a `Scene` and a `Scene` becomes files, chosen by extension.

    from tasks.steps.io import load, save, LoadOptions
    from tasks.steps.tessellate import TessellateOptions

    scene = load("as1-oc-214.stp", LoadOptions(tessellation=TessellateOptions("high")))
    written = save(scene, "out/as1.gltf")      # [as1.gltf, as1.bin, ...]

One module per format family (``gltf.py``, ``obj.py``, ``cad.py``, ...), one `FormatSpec`
per format in `registry.FORMATS`. Importing this package loads no geometry library: a
format's module (trimesh, OCP, pxr, ufbx) is imported when its first file is read or
written. Failures are one-line `ReadError`, `WriteError` or `UnsupportedFormatError`;
native readers that may crash can be run in a child process with `load_isolated`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.steps.errors import StepError
from tasks.steps.io.isolate import load_isolated
from tasks.steps.io.options import LOAD_DEFAULTS, SAVE_DEFAULTS, LoadOptions, SaveOptions
from tasks.steps.io.registry import (
    format_spec,
    readable_extensions,
    reader_for,
    writable_extensions,
    writer_for,
)

if TYPE_CHECKING:
    from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def load(path: Path | str, options: LoadOptions | None = None) -> Scene:
    """Read a 3D or CAD file into a `Scene`, choosing the reader by extension (any case).

    ``LoadOptions(tessellation=TessellateOptions("low"))`` gives quick CAD previews,
    the default ``medium`` is for viewing, ``"very_high"`` for close-up rendering;
    ``LoadOptions(format="stl")`` reads a file whose extension is wrong or missing.
    Raises UnsupportedFormatError for an unknown extension and ReadError (naming the
    file and format) for a missing, corrupt, truncated or empty file. Readers that
    drop content (KTX2 textures, unresolvable textures) say so in ``scene.warnings``.
    For untrusted uploads prefer `load_isolated`, which survives reader crashes.
    """
    from tasks.steps.io.common import describe, read_error, require_geometry

    options = options or LOAD_DEFAULTS
    path = Path(path)
    # 1. pick the reader
    extension, reader = reader_for(path, options.format)
    if not path.is_file():
        raise read_error(path, extension, "file not found")
    # 2. read, turning library exceptions into one-line errors
    started = time.perf_counter()
    try:
        scene = reader(path, options)
        # 3. an empty result is a failure the user must hear about (counting walks the
        # node graph, which a hostile file can make cyclic: that is a read error too)
        require_geometry(scene, path, extension)
    except StepError:
        raise
    except (Exception, MemoryError) as exc:
        raise read_error(path, extension, describe(exc)) from exc
    # 4. into metres and +Y up, from what the file declares or its format's convention
    for each in (scene, *scene.lods):
        each.source_name = path.name
        each.source_format = extension
        _to_metres_y_up(each, extension, options)
    logger.debug(
        "read %s as %s: %d triangles, %d warnings in %.2fs",
        path.name,
        extension,
        scene.triangle_count,
        len(scene.warnings),
        time.perf_counter() - started,
    )
    return scene


def save(scene: Scene, path: Path | str, options: SaveOptions | None = None) -> list[Path]:
    """Write a `Scene` to a file chosen by extension and return every file written.

    Multi-file formats return all their parts: ``.gltf`` + ``.bin`` + textures,
    ``.obj`` + ``.mtl`` + images. Coordinates are written in the target's convention
    (`output_frame`); the scene passed in is left as it is.
    ``SaveOptions(draco=True)`` compresses GLB/glTF;
    FBX needs ``SaveOptions(blender_executable=...)``. The parent folder is created.
    Raises UnsupportedFormatError or WriteError (naming the file and format).
    """
    from tasks.steps.io.common import describe, write_error
    from tasks.steps.units import to_frame

    options = options or SAVE_DEFAULTS
    path = Path(path)
    # 1. pick the writer
    extension, writer = writer_for(path, options.format)
    if not scene.trimesh_scene.geometry:
        raise write_error(path, extension, "the scene has no geometry")
    # 2. into the target's unit and up axis (a copy: the caller's scene stays in metres)
    original = scene
    unit, up_axis = output_frame(scene, extension, options)
    if (scene.unit or 1.0, scene.up_axis or "y") != (unit, up_axis):
        scene = to_frame(_framed(scene.copy()), unit, up_axis)
    # 3. write, turning library exceptions into one-line errors
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        written = writer(scene, path, options)
    except StepError:
        raise
    except (Exception, MemoryError) as exc:
        raise write_error(path, extension, describe(exc)) from exc
    # 4. what the writer said it left out, and what the format cannot hold at all
    if scene is not original:
        original.warnings.extend(scene.warnings[len(original.warnings) :])
    from tasks.steps.io.common import unkept_content

    spec = format_spec(extension)
    for warning in unkept_content(original, spec.name, spec.holds) if spec else []:
        if warning not in original.warnings:  # a scene saved twice says it once
            original.warnings.append(warning)
    logger.debug(
        "wrote %s (%d files) in %.2fs", path.name, len(written), time.perf_counter() - started
    )
    return written


def output_frame(scene: Scene, extension: str, options: SaveOptions | None = None):
    """(metres per unit, up axis) that `save` writes `scene` in as `extension`: the format's
    fixed convention (glTF metres and +Y, 3MF millimetres and +Z), else
    ``options.output_unit`` or the source's unit, and the source's up axis."""
    options = options or SAVE_DEFAULTS
    spec = format_spec(extension)
    unit = spec.write_unit if spec else None
    up_axis = spec.write_up_axis if spec else None
    unit = unit or options.output_unit or scene.source_unit or 1.0
    return float(unit), up_axis or scene.source_up_axis or "y"


def _to_metres_y_up(scene: Scene, extension: str, options: LoadOptions) -> None:
    from tasks.steps.units import to_frame

    spec = format_spec(extension)
    scene.source_unit = float(options.input_unit or scene.unit or (spec.unit if spec else 1.0))
    scene.source_up_axis = options.up_axis or scene.up_axis or (spec.up_axis if spec else "y")
    scene.unit, scene.up_axis = scene.source_unit, scene.source_up_axis
    to_frame(scene, 1.0, "y")


def _framed(scene: Scene) -> Scene:
    """A scene built in code (not read by `load`) is taken to be in metres, +Y up."""
    scene.unit = scene.unit or 1.0
    scene.up_axis = scene.up_axis or "y"
    return scene


__all__ = [
    "LoadOptions",
    "SaveOptions",
    "load",
    "load_isolated",
    "output_frame",
    "readable_extensions",
    "save",
    "writable_extensions",
]
