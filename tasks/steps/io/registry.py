"""The formats this server reads and writes: one `FormatSpec` per format, all in `FORMATS`.

What code outside a format's module needs to know about it (its name, extensions,
whether it is read in a child process, its up axis and unit when the file says
nothing, what content it can hold) is on its spec, and answering imports no geometry
library: a format module, with trimesh, OCP, pxr or ufbx behind it, is imported only
when a file of that format is actually read or written.

Adding a format is two things: a module ``tasks/steps/io/<family>.py`` exposing
``READERS = {"ext": read_x}`` and ``WRITERS = {"ext": write_x}`` (see ``stl.py``), and
one ``FormatSpec(...)`` entry in `FORMATS`; ``tests/steps/test_formats.py`` checks
that the two agree. Readers registered at run time (`register_reader`) win over the
built-in ones and travel with `load_isolated` into its child process.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tasks.steps.errors import UnsupportedFormatError

if TYPE_CHECKING:
    from tasks.steps.io.common import Reader, Writer

CONTENT_KINDS = {
    "hierarchy": "a tree of named nodes with local transforms (not just named groups)",
    "materials": "colours or PBR factors per mesh or face",
    "textures": "images mapped through texture coordinates",
    "instances": "one mesh placed several times and stored once",
    "units": "a known length unit, declared in the file and kept, or fixed by the spec",
    "points": "point clouds (vertices without faces)",
}
"""What `FormatSpec.holds` may name, and what each means."""


def _clean(extension: str) -> str:
    """An extension as the registry keys it: lower case, no dot."""
    return extension.strip().lstrip(".").lower()


@dataclass(frozen=True)
class FormatSpec:
    """One file format: how this server names, finds, reads and writes it."""

    name: str
    """The name users know the format by, in messages: ``"STEP"``, ``"glTF"``. Required."""

    extensions: tuple[str, ...]
    """File extensions, lower case without the dot, the usual one first. Required."""

    module: str
    """Import path of the module whose ``READERS``/``WRITERS`` hold this format's
    functions, e.g. ``"tasks.steps.io.cad"``; imported only to read or write. Required."""

    readable: bool = True
    """The module has a reader for every extension. Default True."""

    writable: bool = True
    """The module has a writer for every extension. Default True."""

    isolated: bool = False
    """Uploads are read in a child process (`load_isolated`): the reader is native code
    (OCCT, OpenUSD, ufbx) or has crashed on fuzzed files before (PLY). Default False:
    numpy and Python readers run in place. The FBX reader also isolates itself when
    called in place, because ufbx 0.0.5 crashes the process that tears it down."""

    up_axis: str = "y"
    """``"x"``, ``"y"`` or ``"z"``: the up axis when the file declares none, by the format's spec or
    its tools' convention (CAD and 3D printing are Z-up). Default ``"y"``, as glTF."""

    unit: float = 1.0
    """Metres per model unit when the file declares none: 1.0 for glTF (metres by its
    spec), 0.001 for 3MF (its spec's default millimetre) and for STEP/IGES (OCCT reads
    them into millimetres), 0.01 for USD (UsdGeom's fallback ``metersPerUnit``) and FBX
    (``UnitScaleFactor`` 1 means centimetres). Default 1.0, also for the unitless formats
    (OBJ, STL, PLY, OFF) and BREP (OCCT's millimetre, like STEP)."""

    write_unit: float | None = None
    """Metres per unit the writer writes in, when its format fixes one (glTF 1.0, 3MF
    0.001). Default None: ``SaveOptions.output_unit``, else the source file's unit."""

    write_up_axis: str | None = None
    """The up axis the writer writes, when its format fixes one (glTF ``"y"``, 3MF
    ``"z"``). Default None: the source file's up axis."""

    holds: frozenset[str] = field(default_factory=frozenset)
    """What this server keeps of a file in the format, among `CONTENT_KINDS`: what the
    reader puts into the Scene and, for a writable format, the writer also writes.
    Default empty: a triangle soup."""

    def __post_init__(self) -> None:
        # a wrong entry in FORMATS fails at import, naming itself
        if not self.extensions or any(
            not extension or extension != _clean(extension) for extension in self.extensions
        ):
            raise ValueError(f"{self.name}: extensions must be lower case without the dot")
        for axis in (self.up_axis, self.write_up_axis or "y"):
            if axis not in ("x", "y", "z"):
                raise ValueError(f"{self.name}: up_axis must be 'x', 'y' or 'z', got {axis!r}")
        if not self.unit > 0:
            raise ValueError(f"{self.name}: unit must be positive metres, got {self.unit!r}")
        unknown = set(self.holds) - set(CONTENT_KINDS)
        if unknown:
            raise ValueError(f"{self.name}: holds names unknown content {sorted(unknown)}")
        if not (self.readable or self.writable):
            raise ValueError(f"{self.name}: a format is readable, writable or both")

    def reader(self, extension: str | None = None) -> Reader:
        """The reader for one of this format's extensions (default the first); imports
        `module` now. UnsupportedFormatError if the format is not readable."""
        extension = self._own(extension)
        if not self.readable:
            raise unsupported_format(extension, "read")
        return self._lookup("READERS", extension)

    def writer(self, extension: str | None = None) -> Writer:
        """The writer for one of this format's extensions (default the first); imports
        `module` now. UnsupportedFormatError if the format is not writable."""
        extension = self._own(extension)
        if not self.writable:
            raise unsupported_format(extension, "write")
        return self._lookup("WRITERS", extension)

    def _own(self, extension: str | None) -> str:
        extension = self.extensions[0] if extension is None else _clean(extension)
        if extension not in self.extensions:
            raise ValueError(f"'.{extension}' is not a {self.name} extension")
        return extension

    def _lookup(self, table: str, extension: str):
        functions = getattr(importlib.import_module(self.module), table)
        if extension not in functions:
            raise LookupError(f"{self.module}.{table} has nothing for '.{extension}'")
        return functions[extension]


FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec(
        "glTF",
        ("glb", "gltf"),
        "tasks.steps.io.gltf",
        write_unit=1.0,
        write_up_axis="y",
        holds=frozenset({"hierarchy", "materials", "textures", "instances", "units", "points"}),
    ),
    FormatSpec(
        "OBJ", ("obj",), "tasks.steps.io.obj", holds=frozenset({"materials", "textures", "points"})
    ),
    FormatSpec("STL", ("stl",), "tasks.steps.io.stl", up_axis="z"),
    FormatSpec("PLY", ("ply",), "tasks.steps.io.ply", isolated=True, holds=frozenset({"points"})),
    FormatSpec("OFF", ("off",), "tasks.steps.io.off"),
    # trimesh 5.2 reads no 3MF materials; files are written in millimetres
    FormatSpec(
        "3MF",
        ("3mf",),
        "tasks.steps.io.threemf",
        up_axis="z",
        unit=0.001,
        write_unit=0.001,
        write_up_axis="z",
        holds=frozenset({"hierarchy", "instances", "units"}),
    ),
    # trimesh copies each instanced geometry; <unit> and <up_axis> are read by the module
    FormatSpec(
        "COLLADA",
        ("dae", "zae"),
        "tasks.steps.io.collada",
        writable=False,
        holds=frozenset({"hierarchy", "materials", "textures", "units"}),
    ),
    # metersPerUnit and upAxis are read; written stages are +Y up in the output unit
    FormatSpec(
        "USD",
        ("usd", "usda", "usdc", "usdz"),
        "tasks.steps.io.usd",
        isolated=True,
        unit=0.01,
        write_up_axis="y",
        holds=frozenset({"hierarchy", "materials", "textures", "points", "units"}),
    ),
    # ufbx turns every axis system +Y up and reports UnitScaleFactor; Blender writes
    # from a GLB, so in metres and +Y up
    FormatSpec(
        "FBX",
        ("fbx",),
        "tasks.steps.io.fbx",
        isolated=True,
        unit=0.01,
        write_unit=1.0,
        write_up_axis="y",
        holds=frozenset({"hierarchy", "materials", "textures", "instances", "units"}),
    ),
    FormatSpec(
        "STEP",
        ("step", "stp"),
        "tasks.steps.io.cad",
        writable=False,
        isolated=True,
        up_axis="z",
        unit=0.001,
        holds=frozenset({"hierarchy", "materials", "instances", "units"}),
    ),
    # OCCT gives IGES no assembly tree: shapes with their names and colours
    FormatSpec(
        "IGES",
        ("iges", "igs"),
        "tasks.steps.io.cad",
        writable=False,
        isolated=True,
        up_axis="z",
        unit=0.001,
        holds=frozenset({"materials", "units"}),
    ),
    # one shape, no names below the file's or colours; OCCT's millimetre, like STEP
    FormatSpec(
        "BREP",
        ("brep",),
        "tasks.steps.io.cad",
        writable=False,
        isolated=True,
        up_axis="z",
        unit=0.001,
        holds=frozenset({"units"}),
    ),
    # IfcOpenShell builds each element in the project's length unit (metres when the file
    # has no unit assignment); the spatial tree is the hierarchy
    FormatSpec(
        "IFC",
        ("ifc",),
        "tasks.steps.io.ifc",
        writable=False,
        isolated=True,
        up_axis="z",
        holds=frozenset({"hierarchy", "materials", "instances", "units"}),
    ),
    # rhino3dm reads the render meshes Rhino saved with B-reps; a file in no unit is metres
    FormatSpec(
        "3DM",
        ("3dm",),
        "tasks.steps.io.rhino",
        writable=False,
        isolated=True,
        up_axis="z",
        holds=frozenset({"hierarchy", "materials", "textures", "instances", "units", "points"}),
    ),
    # point clouds are streamed and, with LoadOptions.max_points, subsampled while read; all
    # Z-up as surveying tools draw them. E57 is metres by its standard, one node per scan
    # placed by its pose (libE57Format is native code: isolated)
    FormatSpec(
        "E57",
        ("e57",),
        "tasks.steps.io.points",
        writable=False,
        isolated=True,
        up_axis="z",
        holds=frozenset({"hierarchy", "points", "units"}),
    ),
    # metres unless the CRS names a foot; written in metres (LAS declares no unit without
    # a CRS), LAZ through lazrs
    FormatSpec(
        "LAS",
        ("las", "laz"),
        "tasks.steps.io.points",
        up_axis="z",
        write_unit=1.0,
        write_up_axis="z",
        holds=frozenset({"points", "units"}),
    ),
    FormatSpec(
        "PTS",
        ("pts",),
        "tasks.steps.io.points",
        writable=False,
        up_axis="z",
        holds=frozenset({"points"}),
    ),
    FormatSpec(
        "XYZ",
        ("xyz",),
        "tasks.steps.io.points",
        writable=False,
        up_axis="z",
        holds=frozenset({"points"}),
    ),
    # OCCT's VrmlAPI_CafReader: VRML97 meshes and primitives placed as the Transforms say
    # (one level deep, DEF names lost), Material colours, USE as instances; metres and +Y
    # up by the VRML97 spec. No textures, no Text; X3D has no reader
    FormatSpec(
        "VRML",
        ("wrl", "vrml"),
        "tasks.steps.io.vrml",
        writable=False,
        isolated=True,
        holds=frozenset({"materials", "instances", "units"}),
    ),
)
"""Every format this server knows; everything else in this module is derived from it."""


def _index(formats: tuple[FormatSpec, ...]) -> dict[str, FormatSpec]:
    by_extension: dict[str, FormatSpec] = {}
    for spec in formats:
        for extension in spec.extensions:
            if extension in by_extension:
                raise ValueError(
                    f"'.{extension}' belongs to both {by_extension[extension].name} and {spec.name}"
                )
            by_extension[extension] = spec
    return by_extension


_BY_EXTENSION = _index(FORMATS)

_registered_readers: dict[str, Reader] = {}


# -- questions answered without importing a format module -------------------------------


def format_spec(extension: str) -> FormatSpec | None:
    """The spec for an extension (any case, with or without the dot), None if unknown."""
    return _BY_EXTENSION.get(_clean(extension))


def format_name(extension: str) -> str:
    """The name users know a format by (``stp`` -> ``STEP``); unknown ones upper-cased."""
    spec = format_spec(extension)
    return spec.name if spec else _clean(extension).upper()


def is_isolated(extension: str) -> bool:
    """Whether uploads with this extension are read in a child process (False if unknown)."""
    spec = format_spec(extension)
    return spec is not None and spec.isolated


def readable_extensions() -> list[str]:
    """Extensions `load` understands, run-time registrations included: lower case without
    the dot, sorted."""
    built_in = (extension for spec in FORMATS if spec.readable for extension in spec.extensions)
    return sorted({*built_in, *_registered_readers})


def writable_extensions() -> list[str]:
    """Extensions `save` understands, lower case without the dot, sorted."""
    return sorted(extension for spec in FORMATS if spec.writable for extension in spec.extensions)


def extension_of(path: Path | str, requested: str | None = None) -> str:
    """The registry key for a file: the requested format, else its extension, lower case."""
    return _clean(requested) if requested else _clean(Path(path).suffix)


def unsupported_format(
    extension_or_path: Path | str,
    what: Literal["read", "write"] = "read",
    *,
    subject: str | None = None,
) -> UnsupportedFormatError:
    """The one error for a format this server cannot read (or write), listing what it can:

        unsupported format '.dwg' for 'part.dwg'; this server reads 3mf, brep, dae, ...
        unsupported format: 'README' has no extension; this server reads 3mf, ...
        unsupported format '.step'; this server writes 3mf, fbx, glb, ...

    A `Path`, or a string with a suffix or a folder, is a file; another string is an
    extension (``"dwg"``, ``".dwg"``). ``subject`` says what asked for the format instead
    of the file's name: ``subject="params.extension"`` gives ``unsupported format '.dwg'
    for params.extension; this server writes ...``.
    """
    if what not in ("read", "write"):
        raise ValueError(f"what must be 'read' or 'write', got {what!r}")
    text = str(extension_or_path)
    is_path = isinstance(extension_or_path, Path) or "/" in text or bool(Path(text).suffix)
    name = Path(text).name if is_path else ""
    extension = extension_of(text) if is_path else _clean(text)
    about = subject or (f"'{name}'" if name else "")
    if extension:
        problem = f"unsupported format '.{extension}'" + (f" for {about}" if about else "")
    elif about:
        problem = f"unsupported format: {about} has no extension"
    else:
        problem = "unsupported format: no extension given"
    known = readable_extensions() if what == "read" else writable_extensions()
    return UnsupportedFormatError(f"{problem}; this server {what}s {', '.join(known)}")


# -- readers and writers (importing the format modules) ---------------------------------


def readers() -> dict[str, Reader]:
    """Extension -> reader for every readable format, run-time registrations included.
    Imports every format module."""
    built_in = {
        extension: spec.reader(extension)
        for spec in FORMATS
        if spec.readable
        for extension in spec.extensions
    }
    return {**built_in, **_registered_readers}


def writers() -> dict[str, Writer]:
    """Extension -> writer for every writable format. Imports every format module."""
    return {
        extension: spec.writer(extension)
        for spec in FORMATS
        if spec.writable
        for extension in spec.extensions
    }


def reader_for(path: Path | str, requested: str | None = None) -> tuple[str, Reader]:
    """(extension, reader) for a file, importing only its format's module, or
    `unsupported_format` listing what this server reads."""
    extension = extension_of(path, requested)
    if extension in _registered_readers:
        return extension, _registered_readers[extension]
    spec = _BY_EXTENSION.get(extension)
    if spec is None or not spec.readable:
        raise _unsupported(path, extension, requested, "read")
    return extension, spec.reader(extension)


def writer_for(path: Path | str, requested: str | None = None) -> tuple[str, Writer]:
    """(extension, writer) for a file, importing only its format's module, or
    `unsupported_format` listing what this server writes."""
    extension = extension_of(path, requested)
    spec = _BY_EXTENSION.get(extension)
    if spec is None or not spec.writable:
        raise _unsupported(path, extension, requested, "write")
    return extension, spec.writer(extension)


def register_reader(extension: str, reader: Reader) -> None:
    """Add or replace the reader for an extension in this process (plugins, tests).

    The reader must be a module-level function so `load_isolated` can send it to its
    child process by reference.
    """
    _registered_readers[_clean(extension)] = reader


def unregister_reader(extension: str) -> None:
    """Forget a reader added with `register_reader` (the built-in one, if any, comes back)."""
    _registered_readers.pop(_clean(extension), None)


def registered_readers() -> dict[str, Reader]:
    """The readers added at run time (a copy)."""
    return dict(_registered_readers)


def _unsupported(
    path: Path | str, extension: str, requested: str | None, what: Literal["read", "write"]
) -> UnsupportedFormatError:
    if requested:
        return unsupported_format(extension, what, subject=f"'{Path(path).name}'")
    return unsupported_format(Path(path), what)
