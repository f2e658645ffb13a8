"""`pixyz`: the service's command line.

    pixyz serve --host 127.0.0.1 --port 8000 --storage ./var/storage [--address auto]

Without `--address`, it starts a private local Ray cluster, deploys the API
on it and runs until SIGTERM/SIGINT/SIGHUP, then drains running jobs and stops
Serve and that cluster. It does so in a child process with a session of its
own (`supervise`), so that a signal to the caller's whole process group reaches
Ray's GCS and raylet only through that orderly stop. With `--address auto` (or
a cluster address) it deploys onto the existing cluster and returns. The API key
comes from `PIXYZ_API_KEY` or `PIXYZ_API_KEY_SHA256`; with neither, a key is
generated once and printed once; only its SHA-256 digest is kept, in
`<storage>/api_key` (mode 0600).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from pixyz_client.cli import add_commands
from tasks.settings import Settings, hash_key
from tasks.storage import Storage

logger = logging.getLogger("pixyz")

KEY_FILE = "api_key"
DIGEST_PREFIX = "sha256:"
SESSION_ENV = "PIXYZ_SERVE_SESSION"  # set in the child process that runs Ray and Serve
SERVE_STOP_SECONDS = 6
RAY_STOP_SECONDS = 3


def ensure_api_key(settings: Settings) -> str | None:
    """Make sure some key is accepted; returns the plain key only when it was just generated.

    The key file holds the key's SHA-256 digest (`sha256:<hex>`), never the key: it is
    printed once, at creation. A file an older version wrote with the plain key is
    rewritten as its digest on first read.
    """
    if settings.api_key_sha256:
        return None
    storage = Storage(settings.storage, settings.storage_options)
    path = storage.path(KEY_FILE)
    plain = None
    if storage.exists(path):
        with storage.fs.open(path, "rb") as f:
            stored = f.read().decode().strip()
        digest = stored.removeprefix(DIGEST_PREFIX)
        if not stored.startswith(DIGEST_PREFIX):  # written in plain text by an older version
            digest = hash_key(stored)
            storage.write_bytes_atomic(path, f"{DIGEST_PREFIX}{digest}\n".encode())
            logger.warning("%s held the API key in plain text; it now holds only its digest", path)
    else:
        plain = secrets.token_urlsafe(32)
        digest = hash_key(plain)
        storage.write_bytes_atomic(path, f"{DIGEST_PREFIX}{digest}\n".encode())
    if storage.is_local:
        os.chmod(path, 0o600)
    settings.api_key_sha256.append(digest)
    return plain


def serve_command(args: argparse.Namespace) -> int:
    if not args.address and os.environ.get(SESSION_ENV) != "1":
        return supervise(args.argv, Settings().drain_seconds)

    from serve_app import ingress

    if not args.address:  # on a cluster, the nodes' environment chose it (cluster.yaml)
        ingress.configure(args.ingress, os.path.abspath(os.path.join(args.ray_temp_dir, "haproxy")))
    from ray import serve

    from serve_app.deployment import APP_NAME, app_builder, start_serve
    from serve_app.local_ray import start_local_ray

    overrides = {}
    if args.storage:
        overrides["storage"] = args.storage
    settings = Settings(**overrides)
    from_key_file = not settings.api_key_sha256
    generated_key = ensure_api_key(settings)

    import ray

    if args.address:
        ray.init(address=args.address, namespace=settings.namespace)
    else:
        start_local_ray(
            namespace=settings.namespace,
            num_cpus=args.num_cpus,
            object_store_bytes=args.object_store_mb * 1024**2,
            temp_dir=args.ray_temp_dir,
            dashboard=args.dashboard,
        )
    start_serve(args.host, args.port)
    serve.run(app_builder(settings.model_dump(mode="json")), name=APP_NAME, route_prefix="/")

    url = f"http://{args.host}:{args.port}"
    print(f"PiXYZ API ready at {url}  (docs: {url}/docs)", flush=True)
    print(f"Storage: {settings.storage}", flush=True)
    if generated_key:
        print(
            f"API key: {generated_key}   (send it as the x-api-key header; shown this once,"
            f" only its SHA-256 digest is kept in {KEY_FILE})",
            flush=True,
        )
    elif from_key_file:
        print(
            f"API key: the one printed when {settings.storage} was first used"
            f" (its SHA-256 digest is in {KEY_FILE}; delete that file for a new key)",
            flush=True,
        )
    else:
        print("API key: from PIXYZ_API_KEY / PIXYZ_API_KEY_SHA256", flush=True)

    if args.address:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    if ray_alive():
        drain(settings)
    else:  # a signal to every process (e.g. systemd's KillMode=control-group) also hit Ray
        print(
            "Ray's own processes were stopped too: not draining; unfinished jobs run again on"
            " the next start",
            flush=True,
        )
    print("Stopping: Serve, then the local Ray cluster...", flush=True)
    if ray_alive():
        _within(SERVE_STOP_SECONDS, serve.shutdown, "Serve did not stop")
    _within(RAY_STOP_SECONDS, ray.shutdown, "Ray did not stop")  # also ends what is left
    ingress.remove_socket_folder()
    print("Stopped.", flush=True)
    sys.stdout.flush()
    os._exit(0)  # Ray's threads (a dead GCS's reconnect loop) must not hold the exit


def _within(seconds: float, stop, complaint: str) -> None:
    """Run `stop()` with a deadline: a step of the shutdown must not hold the whole exit."""
    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    stopper.join(timeout=seconds)
    if stopper.is_alive():
        print(f"{complaint} within {seconds:g} s; going on", flush=True)


def ray_alive() -> bool:
    """Whether this process's local Ray cluster still has all its processes (GCS, raylet, ...)."""
    import ray

    node = ray._private.worker._global_node  # None until ray.init: nothing known to be dead
    return node is None or node.remaining_processes_alive()


def supervise(argv: list[str], drain_seconds: float) -> int:
    """Run `pixyz serve` in a child process, in a session of its own, and stop it on a signal.

    A signal sent to this process's group (systemd, a closed terminal, `kill -- -PGID`, Ctrl-C)
    reaches only this process, never Ray's GCS and raylet, which the child starts in its own
    group: the child then drains running jobs and stops Ray itself. Whatever happens, the
    child's whole group is gone when this returns; the child dies with this process.
    """
    from tasks.sandbox.linux import PR_SET_PDEATHSIG, prctl

    env = {**os.environ, SESSION_ENV: "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "serve_app.cli", *argv],
        env=env,
        start_new_session=True,
        # In the child, before exec: SIGTERM (and so a drain) if this supervisor dies.
        preexec_fn=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM),
    )
    stopping: list[float] = []

    def on_signal(signum, _frame):
        if not stopping:
            stopping.append(time.monotonic())
            child.send_signal(signal.SIGTERM)
        elif signum == signal.SIGINT:  # a second Ctrl-C: stop at once
            print("Stopping at once; unfinished jobs run again on the next start", flush=True)
            _kill_group(child.pid)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    patience = drain_seconds + SERVE_STOP_SECONDS + RAY_STOP_SECONDS + 5
    while child.poll() is None:
        try:
            child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if stopping and time.monotonic() - stopping[0] > patience:
            print(f"The service did not stop within {patience:g} s; ending it", flush=True)
            _kill_group(child.pid)
    _kill_group(child.pid)  # anything of the child's left behind (it was killed, say)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def drain(settings: Settings) -> None:
    """Let running jobs finish (up to `drain_seconds`); the rest resume on the next start.

    The calls to Ray run in a thread this one watches: if Ray's processes die meanwhile
    (a signal to every process), any call may block until Ray's own 60 s GCS timeout, so
    the wait ends as soon as they are gone instead."""
    print(
        f"Draining: no new jobs; waiting up to {settings.drain_seconds:g} s for running ones...",
        flush=True,
    )
    outcome: dict = {}
    worker = threading.Thread(target=_drain_store, args=(settings, outcome), daemon=True)
    worker.start()
    deadline = time.monotonic() + settings.drain_seconds + 5
    while worker.is_alive():
        worker.join(timeout=0.25)
        if worker.is_alive() and not ray_alive():
            outcome["error"] = "Ray's processes stopped while draining"
            break
        if time.monotonic() > deadline:
            outcome["error"] = (
                f"the JobStore did not answer within {settings.drain_seconds + 5:g} s"
            )
            break
    if "error" in outcome:  # shutting down regardless; say why draining was cut short
        print(f"Draining stopped early: {outcome['error']}", flush=True)
    elif outcome.get("remaining"):
        print(
            f"{outcome['remaining']} job(s) still running: they will run again on the next start",
            flush=True,
        )


def _drain_store(settings: Settings, outcome: dict) -> None:
    import ray

    from tasks.jobstore import get_or_create_store

    try:
        store = get_or_create_store(settings)
        outcome["remaining"] = ray.get(store.drain.remote(settings.drain_seconds))
    except Exception as exc:
        outcome.setdefault("error", f"{type(exc).__name__}: {exc}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixyz", description="The PiXYZ API on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="start the API (on a local Ray cluster unless --address is given)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--storage",
        default=None,
        help="folder or fsspec URL (default: $PIXYZ_STORAGE or ./var/storage)",
    )
    serve.add_argument(
        "--address", default=None, help="deploy onto an existing Ray cluster ('auto' or host:port)"
    )
    serve.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="local cluster only: CPUs for jobs (default: all)",
    )
    serve.add_argument(
        "--object-store-mb", type=int, default=512, help="local cluster only (default 512)"
    )
    serve.add_argument(
        "--ray-temp-dir",
        default=os.path.join("var", "ray"),
        help="local cluster only: Ray's session files (default ./var/ray)",
    )
    serve.add_argument(
        "--dashboard", action="store_true", help="local cluster only: start Ray's dashboard"
    )
    serve.add_argument(
        "--ingress",
        choices=("haproxy", "proxy"),
        default=None,
        help="local cluster only: HTTP ingress, HAProxy or Serve's Python proxy"
        " (default: $PIXYZ_INGRESS or haproxy)",
    )
    serve.set_defaults(func=serve_command)
    add_commands(parser, commands)  # the client's commands: list, jobs, exec, convert, ...
    return parser


def main(argv: list[str] | None = None) -> int:
    from serve_app.local_ray import pin_to_loopback

    pin_to_loopback()  # before anything imports ray
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
