"""Which function reads or writes which file extension.

Every format module exposes ``READERS = {"ext": fn}`` and ``WRITERS = {"ext": fn}``;
this module merges them. Adding a format is adding a module to `FORMAT_MODULES`.
Readers registered at run time (`register_reader`) win over the built-in ones and
travel with `load_isolated` into its child process.
"""

from __future__ import annotations

from pathlib import Path

from tasks.steps.errors import UnsupportedFormatError
from tasks.steps.io import cad, collada, fbx, gltf, obj, off, ply, stl, threemf, usd
from tasks.steps.io.common import Reader, Writer

FORMAT_MODULES = (gltf, obj, stl, ply, off, threemf, collada, usd, fbx, cad)

_registered_readers: dict[str, Reader] = {}


def _merged(attribute: str) -> dict:
    merged: dict = {}
    for module in FORMAT_MODULES:
        merged.update(getattr(module, attribute))
    return merged


def readers() -> dict[str, Reader]:
    """Extension (lower case, no dot) -> reader, run-time registrations included."""
    return {**_merged("READERS"), **_registered_readers}


def writers() -> dict[str, Writer]:
    """Extension (lower case, no dot) -> writer."""
    return _merged("WRITERS")


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


def extension_of(path: Path | str, requested: str | None = None) -> str:
    """The registry key for a file: the requested format, else its extension, lower case."""
    return _clean(requested) if requested else _clean(Path(path).suffix)


def reader_for(path: Path | str, requested: str | None = None) -> tuple[str, Reader]:
    """(extension, reader) for a file, or UnsupportedFormatError("unsupported format '.dwg'")."""
    extension = extension_of(path, requested)
    reader = readers().get(extension)
    if reader is None:
        raise _unsupported(path, extension)
    return extension, reader


def writer_for(path: Path | str, requested: str | None = None) -> tuple[str, Writer]:
    """(extension, writer) for a file, or UnsupportedFormatError."""
    extension = extension_of(path, requested)
    writer = writers().get(extension)
    if writer is None:
        raise _unsupported(path, extension)
    return extension, writer


def _unsupported(path: Path | str, extension: str) -> UnsupportedFormatError:
    if extension:
        return UnsupportedFormatError(f"unsupported format '.{extension}'")
    return UnsupportedFormatError(f"unsupported format: '{Path(path).name}' has no extension")


def _clean(extension: str) -> str:
    return extension.strip().lstrip(".").lower()
