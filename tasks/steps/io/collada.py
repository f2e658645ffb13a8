"""COLLADA in (.dae, and .zae zip packages): meshes, node tree, materials and textures.

Geometry comes through trimesh (pycollada). Meshes placed only through a skin
controller (``<instance_controller>``) are not followed; a file with nothing else
fails with a ReadError that says so, instead of loading as an empty scene.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

from tasks.steps.io.common import geometry_counts, load_with_trimesh, read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def read_collada(path: Path, options: LoadOptions) -> Scene:
    """Read a .dae or .zae into a Scene; ``facts["animation_count"]`` counts top-level
    ``<animation>`` elements."""
    extension = path.suffix.lstrip(".").lower()
    # 1. the document's own counts (animations, controller-only meshes)
    animations, controllers = _count_elements(_document_bytes(path))
    # 2. geometry through trimesh
    loaded = load_with_trimesh(path, extension)
    triangles, _ = geometry_counts(loaded)
    if triangles == 0 and controllers:
        raise read_error(
            path,
            extension,
            f"the file has no static geometry; its {controllers} mesh(es) are only placed "
            "through skin controllers, which this reader does not follow",
        )
    facts = {"animation_count": animations} if animations else {}
    logger.debug("COLLADA %s: %d triangles, %d animations", path.name, triangles, animations)
    return Scene(trimesh_scene=loaded, facts=facts)


def _document_bytes(path: Path) -> bytes:
    if path.suffix.lower() != ".zae":
        return path.read_bytes()
    with zipfile.ZipFile(path) as package:
        names = [name for name in package.namelist() if name.lower().endswith(".dae")]
        if not names:
            raise read_error(path, "zae", "the package holds no .dae document")
        return package.read(names[0])


def _count_elements(data: bytes) -> tuple[int, int]:
    """(top-level animations, instance_controller elements) without building the document."""
    from lxml import etree

    animations = controllers = 0
    depth_of_library = None
    for event, element in etree.iterparse(
        io.BytesIO(data), events=("start", "end"), recover=True, huge_tree=True
    ):
        tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
        if event == "start":
            if tag == "library_animations":
                depth_of_library = 0
            elif depth_of_library is not None:
                if tag == "animation" and depth_of_library == 0:
                    animations += 1
                depth_of_library += 1
            if tag == "instance_controller":
                controllers += 1
        else:
            if tag == "library_animations":
                depth_of_library = None
            elif depth_of_library is not None:
                depth_of_library -= 1
            element.clear()
    return animations, controllers


READERS = {"dae": read_collada, "zae": read_collada}
WRITERS: dict = {}
