"""`/ui`: the web console, static files shipped inside the package (`serve_app/ui/`).

The console is a page of plain HTML, CSS and ES modules (three.js vendored under
`ui/vendor/`, refreshed by `scripts/vendor-ui.sh`); it calls the public API with the
key the user enters, so it can do nothing that key cannot. The files themselves
hold no secret and are served without a key, also when `open_routes` is off.
URLs inside are relative, so the console works behind a path prefix.

The page keeps the key in sessionStorage, so every response under `/ui` carries a
Content-Security-Policy that lets only the console's own files run: no inline script
but the import map (allowed by its hash), no other origin, not framed by other pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def security_headers(index_html: str) -> dict[str, str]:
    """The headers of every console response; the import map's hash comes from the page."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
        for m in _IMPORT_MAP.findall(index_html)
    )
    policy = "; ".join(
        (
            "default-src 'self'",
            # wasm: the Draco, meshopt and Basis decoders. 'unsafe-eval': the Basis
            # transcoder (Emscripten embind, in the KTX2 loader's worker) builds functions
            # from strings; the console itself has no eval. blob: workers, which the Draco
            # and KTX2 loaders start from their decoders' code.
            f"script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval' {hashes}",
            "worker-src 'self' blob:",
            "img-src 'self' blob: data:",
            "connect-src 'self' blob: data:",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers on every answer."""

    def __init__(self, directory: Path):
        super().__init__(directory=directory, html=True)
        self.headers = security_headers((directory / "index.html").read_text(encoding="utf-8"))

    async def get_response(self, path: str, scope):
        response = await super().get_response(path, scope)
        response.headers.update(self.headers)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console at `/ui/` (Starlette redirects `/ui` there, with the ASGI
    `root_path` a proxy or Serve's route prefix sets). No route of its own: it is no
    API operation, and needs no key whatever `open_routes` says."""
    app.mount("/ui", ConsoleFiles(UI_DIR), name="ui")
