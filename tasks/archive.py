"""Safe unpacking of uploaded archives (.zip, .tar, .tar.gz, .tgz) and finding the model inside.

An upload is hostile until proven otherwise: members may try to escape the
folder (`../x`, absolute paths), be links or devices, or expand to far more
than they weigh (zip bombs). Every check happens before a byte is written,
and the declared sizes are enforced again while writing, since headers lie.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


class ArchiveError(ValueError):
    """The archive is unsafe or unreadable; the message says which member and why."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied to one archive."""

    max_total_bytes: int = 4 * 1024**3
    """Sum of unpacked sizes (default 4 GiB)."""
    max_files: int = 10_000
    """Number of members (default 10,000)."""
    max_ratio: float = 200.0
    """Unpacked size / archive size (default 200: real models compress 2-20×)."""
    max_depth: int = 64
    """Folders a member may be nested in (default 64: deeper paths pass the OS's path limit)."""


ARCHIVE_DEFAULTS = ArchiveLimits()


def is_archive(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def _shown(name: str, limit: int = 120) -> str:
    """A member name for an error message: quoted, and cut in the middle when very long."""
    if len(name) > limit:
        name = f"{name[: limit // 2]}…{name[-limit // 2 :]}"
    return repr(name)


def _safe_member_path(dest: Path, name: str, limits: ArchiveLimits = ARCHIVE_DEFAULTS) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise ArchiveError(f"archive member {_shown(name)} points outside the archive folder")
    if len(pure.parts) - 1 > limits.max_depth:
        raise ArchiveError(
            f"archive member {_shown(name)} is nested {len(pure.parts) - 1} folders deep, "
            f"more than the limit of {limits.max_depth}"
        )
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ArchiveError(f"archive member {_shown(name)} points outside the archive folder")
    return target


def safe_extract(
    archive: str | Path, dest: str | Path, limits: ArchiveLimits = ARCHIVE_DEFAULTS
) -> list[Path]:
    """Unpack `archive` into `dest`; return the files written. Raises ArchiveError."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    packed = max(1, archive.stat().st_size)
    budget = min(limits.max_total_bytes, int(packed * limits.max_ratio))
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(archive, dest, limits, budget)
        return _extract_tar(archive, dest, limits, budget)
    except OSError as exc:  # the message, not the (possibly kilobytes long) path
        raise ArchiveError(
            f"cannot unpack archive '{archive.name}': {exc.strerror or exc}"[:500]
        ) from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"cannot read archive '{archive.name}': {exc}"[:500]) from exc


def _check_budget(declared_total: int, count: int, limits: ArchiveLimits, budget: int) -> None:
    if count > limits.max_files:
        raise ArchiveError(
            f"archive holds {count} files, more than the limit of {limits.max_files}"
        )
    if declared_total > budget:
        raise ArchiveError(
            f"archive unpacks to {declared_total} bytes, more than the limit of {budget} "
            f"(total cap {limits.max_total_bytes}, ratio cap {limits.max_ratio:g}×)"
        )


def _copy_capped(src, dst: Path, remaining: int, name: str) -> int:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(1024 * 1024):
            written += len(chunk)
            if written > remaining:
                raise ArchiveError(f"archive member {_shown(name)} unpacks past the size limit")
            out.write(chunk)
    return written


def _extract_zip(archive: Path, dest: Path, limits: ArchiveLimits, budget: int) -> list[Path]:
    written: list[Path] = []
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        _check_budget(sum(m.file_size for m in members), len(members), limits, budget)
        remaining = budget
        for member in members:
            mode = member.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000):
                raise ArchiveError(
                    f"archive member {_shown(member.filename)} is a link or special file"
                )
            target = _safe_member_path(dest, member.filename, limits)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src:
                remaining -= _copy_capped(src, target, remaining, member.filename)
            written.append(target)
    return written


def _extract_tar(archive: Path, dest: Path, limits: ArchiveLimits, budget: int) -> list[Path]:
    written: list[Path] = []
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise ArchiveError(
                    f"archive member {_shown(member.name)} is a link or special file"
                )
        files = [m for m in members if m.isfile()]
        _check_budget(sum(m.size for m in files), len(files), limits, budget)
        remaining = budget
        for member in files:
            target = _safe_member_path(dest, member.name, limits)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            remaining -= _copy_capped(src, target, remaining, member.name)
            written.append(target)
    return written


def find_root_file(folder: str | Path, filename: str | None, extensions: list[str]) -> Path:
    """The model to open among unpacked files: `filename` when the archive holds it, else a guess.

    `params.filename` is also the output name of some processes (convert_file),
    so a name the archive does not hold falls back to the guess. The guess
    prefers, in order, the extensions listed first (scene formats before their
    side files), then the shallowest path, then the largest file.
    """
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    if filename:
        try:
            wanted = _safe_member_path(folder, filename)
        except ArchiveError:
            wanted = None
        if wanted is not None and wanted.is_file():
            return wanted
        by_name = [p for p in files if p.name == PurePosixPath(filename).name]
        if len(by_name) == 1:
            return by_name[0]
    ranked = []
    lowered = [e.lower().lstrip(".") for e in extensions]
    for path in files:
        suffixes = [s.lstrip(".") for s in path.name.lower().split(".")[1:]]
        ext = suffixes[-1] if suffixes else ""
        if ext in lowered and not path.name.startswith("."):
            depth = len(path.relative_to(folder).parts)
            ranked.append((lowered.index(ext), depth, -path.stat().st_size, path))
    if not ranked:
        raise ArchiveError("the archive holds no file this service can open (set params.filename)")
    return min(ranked)[3]
