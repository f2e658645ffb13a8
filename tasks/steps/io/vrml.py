"""VRML97 in (.wrl, .vrml, gzipped or not) through OpenCASCADE's `VrmlAPI_CafReader`.

OCCT reads a VRML97 world into an XCAF document, which `cad`'s scene builder walks as
it walks STEP: every ``Shape`` becomes a mesh with its ``Material`` diffuse colour,
placed where its chain of ``Transform`` nodes puts it, and a ``USE`` of a shape is the
same mesh placed again. ``IndexedFaceSet`` triangles are taken as the file gives them;
``Box``, ``Cylinder``, ``Cone`` and ``Sphere`` arrive as B-rep solids and are
tessellated with ``LoadOptions.tessellation``, like CAD.

What OCCT 8.0 leaves out, so this reader does too: the ``Transform``/``Group`` tree
(every shape hangs one level below a ``Compound`` node, its placement composed),
``DEF`` names (nodes are named ``Compound``, ``Shell``, ``Face`` after OCCT's shapes),
``transparency``, textures and texture coordinates, non-uniform ``scale``, lines and
points, ``Inline`` worlds. A file with a node OCCT does not know (``Text``, ``Script``,
``PROTO``) is refused as a whole, with the reason. X3D (``.x3d`` XML, ``.x3dv``
classic) has no maintained Python or OCCT reader and is not offered.

Units: VRML97 coordinates are metres and +Y is up, by the standard (ISO/IEC 14772-1
§4.4.5). OCCT's reader must be told both length units: left at its default it
divides by an unset unit (-1) and mirrors the world through the origin.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
from pathlib import Path

from tasks.steps.io.common import read_error
from tasks.steps.io.options import LoadOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

_HEADER_BYTES = 64


def read_vrml(path: Path, options: LoadOptions) -> Scene:
    """Read a VRML97 world: its shapes, placed by their Transforms, with material colours."""
    extension = path.suffix.lstrip(".").lower() or "wrl"
    with path.open("rb") as handle:
        head = handle.read(2)
    if head == b"\x1f\x8b":  # .wrl files are often served gzipped under the same name
        with tempfile.TemporaryDirectory() as folder:
            plain = Path(folder) / f"{path.stem}.wrl"
            with gzip.open(path, "rb") as source, plain.open("wb") as target:
                shutil.copyfileobj(source, target)
            return _read(plain, path, extension, options)
    return _read(path, path, extension, options)


def _read(plain: Path, path: Path, extension: str, options: LoadOptions) -> Scene:
    from OCP.Message import Message_ProgressRange
    from OCP.TCollection import TCollection_AsciiString
    from OCP.VrmlAPI import VrmlAPI_CafReader

    from tasks.steps.io import cad

    # 1. the header: OCCT reads VRML 2.0 (VRML97) only
    with plain.open("rb") as handle:
        first = handle.read(_HEADER_BYTES).split(b"\n", 1)[0].decode("latin-1").strip()
    if first.startswith("#X3D"):
        raise read_error(path, extension, "X3D classic encoding is not supported, only VRML97")
    if not first.startswith("#VRML V2.0"):
        found = first[:40] or "an empty first line"
        raise read_error(
            path, extension, f"not a VRML97 file (the first line is {found!r}, not '#VRML V2.0')"
        )
    # 2. parse into an XCAF document, in metres (see the module docstring)
    document = cad._new_document()
    reader = VrmlAPI_CafReader()
    reader.SetDocument(document)
    reader.SetFileLengthUnit(1.0)
    reader.SetSystemLengthUnit(1.0)
    if not reader.Perform(TCollection_AsciiString(str(plain)), Message_ProgressRange()):
        raise read_error(
            path,
            extension,
            "OpenCASCADE's VRML reader rejected the file (it reads VRML97 geometry: a Text,"
            " Script or PROTO node, or a syntax error, stops it)",
        )
    # 3. walk the tree as for CAD: one node per placement, one mesh per shape and colour
    builder = cad._build(document, options, options.tessellation, path.stem)
    logger.debug(
        "VRML %s: %d shapes, %d placements, %d materials",
        path.name,
        len(builder.parts),
        builder.placements,
        len(builder.materials),
    )
    return Scene(trimesh_scene=builder.scene, warnings=builder.warnings, unit=1.0, up_axis="y")


READERS = {"wrl": read_vrml, "vrml": read_vrml}
WRITERS: dict = {}
