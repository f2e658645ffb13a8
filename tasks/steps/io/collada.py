"""COLLADA in (.dae, and .zae zip packages): meshes, node tree, materials and textures.

Geometry comes through trimesh (pycollada); the root ``<asset>``'s ``<unit>`` and
``<up_axis>`` are read here, and `io.load` converts from them. Meshes placed only through a skin
controller (``<instance_controller>``) are not followed; a file with nothing else
fails with a ReadError that says so, instead of loading as an empty scene.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tasks.steps.io.common import geometry_counts, load_with_trimesh, read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def read_collada(path: Path, options: LoadOptions) -> Scene:
    """Read a .dae or .zae into a Scene; ``facts["animation_count"]`` counts top-level
    ``<animation>`` elements."""
    extension = path.suffix.lstrip(".").lower()
    # 1. the document's own counts (animations, controller-only meshes), unit and up axis
    document = _read_document(_document_bytes(path))
    animations, controllers = document.animations, document.controllers
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
    # trimesh keeps the document's coordinates; io.load converts them from these
    return Scene(trimesh_scene=loaded, facts=facts, unit=document.unit, up_axis=document.up_axis)


def _document_bytes(path: Path) -> bytes:
    if path.suffix.lower() != ".zae":
        return path.read_bytes()
    with zipfile.ZipFile(path) as package:
        names = [name for name in package.namelist() if name.lower().endswith(".dae")]
        if not names:
            raise read_error(path, "zae", "the package holds no .dae document")
        return package.read(names[0])


@dataclass
class _Document:
    """What the document says that trimesh does not keep."""

    animations: int = 0
    """Top-level ``<animation>`` elements."""
    controllers: int = 0
    """``<instance_controller>`` elements."""
    unit: float | None = None
    """``<asset><unit meter>``: metres per unit (COLLADA's default, 1.0, when absent)."""
    up_axis: str | None = None
    """``<asset><up_axis>``: ``"x"``, ``"y"`` or ``"z"`` (COLLADA's default Y when absent)."""


def _read_document(data: bytes) -> _Document:
    """The document's counts and its root asset's unit and up axis, without building it."""
    from lxml import etree

    document = _Document()
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
        elif tag in ("unit", "up_axis") and _in_root_asset(element):
            _read_asset_entry(document, tag, element)
        else:
            if tag == "library_animations":
                depth_of_library = None
            elif depth_of_library is not None:
                depth_of_library -= 1
            element.clear()
    document.animations, document.controllers = animations, controllers
    return document


def _in_root_asset(element) -> bool:
    parent = element.getparent()
    return (
        parent is not None
        and isinstance(parent.tag, str)
        and parent.tag.endswith("asset")
        and parent.getparent() is not None
        and parent.getparent().getparent() is None
    )


def _read_asset_entry(document: _Document, tag: str, element) -> None:
    if tag == "unit":
        try:
            metres = float(element.get("meter", "1"))
        except ValueError:
            metres = 1.0
        if metres > 0 and metres < float("inf"):
            document.unit = metres
    else:
        axis = (element.text or "").strip().upper()
        document.up_axis = {"X_UP": "x", "Y_UP": "y", "Z_UP": "z"}.get(axis)


READERS = {"dae": read_collada, "zae": read_collada}
WRITERS: dict = {}
