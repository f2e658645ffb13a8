"""Wavefront OBJ in and out, with MTL materials and texture images.

Reading keeps every ``o``/``g`` group as a named mesh, finds textures that
Windows exporters wrote with backslashes (``map_Kd .\\tex.jpg``) or another letter
case, and loads without materials (warning) when the MTL file is missing.
Writing produces ``name.obj`` + ``name.mtl`` + the texture images.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.steps.io.common import find_file, load_with_trimesh, normalise_reference, write_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def read_obj(path: Path, options: LoadOptions) -> Scene:
    """Read an OBJ and its MTL/textures into a Scene with one mesh per group and material."""
    warnings: list[str] = []
    # 1. say what is missing before trimesh quietly does without it
    libraries = _directives(path.read_bytes(), "mtllib")
    for library in libraries:
        found = find_file(path.parent, library)
        if found is None:
            warnings.append(f"material library '{library}' not found; loaded without materials")
            continue
        missing = [
            image
            for image in _directives(found.read_bytes(), "map_", prefix=True)
            if not image.startswith("-") and find_file(path.parent, image) is None
        ]
        if missing:
            warnings.append(
                f"skipped {len(missing)} missing texture(s) named in '{library}': "
                + ", ".join(sorted(set(missing))[:3])
            )
    # 2. parse, keeping objects and groups apart so their names survive
    loaded = load_with_trimesh(
        path, "obj", split_objects=True, split_groups=True, group_material=False
    )
    logger.debug("OBJ %s: %d meshes, %d warnings", path.name, len(loaded.geometry), len(warnings))
    return Scene(trimesh_scene=loaded, warnings=warnings)


def write_obj(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write ``name.obj`` + ``name.mtl`` + texture images (PBR factors reduce to diffuse)."""
    from trimesh.exchange.obj import export_obj

    mtl_name = path.with_suffix(".mtl").name
    text, files = export_obj(
        scene.trimesh_scene,
        include_normals=options.include_normals,
        include_texture=True,
        return_texture=True,
        mtl_name=mtl_name,
        header=None,
    )
    if not text.strip():
        raise write_error(path, "obj", "the scene has no geometry to write")
    path.write_text(text)
    written = [path]
    for name, data in files.items():
        target = path.with_name(Path(name).name)
        target.write_bytes(data)
        written.append(target)
    return written


def _directives(data: bytes, keyword: str, prefix: bool = False) -> list[str]:
    """Values of lines starting with `keyword` (file names may contain spaces)."""
    values = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        stripped = line.strip()
        head, _, rest = stripped.partition(" ")
        if (head.startswith(keyword) if prefix else head == keyword) and rest.strip():
            values.append(normalise_reference(rest))
    return values


READERS = {"obj": read_obj}
WRITERS = {"obj": write_obj}
