"""`pixyz`: the service's command line.

    pixyz serve --host 127.0.0.1 --port 8000 --storage ./var/storage [--address auto]

Without `--address`, it starts a private local Ray cluster, deploys the API
on it and runs until SIGTERM/SIGINT, then stops Serve and that cluster. With
`--address auto` (or a cluster address) it deploys onto the existing cluster
and returns. The API key comes from `PIXYZ_API_KEY` or `PIXYZ_API_KEY_SHA256`;
with neither, a key is generated once, kept (mode 0600) in the storage folder
and printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading

from pixyz_client.cli import add_commands
from tasks.settings import Settings, hash_key
from tasks.storage import Storage

logger = logging.getLogger("pixyz")

KEY_FILE = "api_key"
SHUTDOWN_SECONDS = 20


def ensure_api_key(settings: Settings) -> str | None:
    """Make sure some key is accepted; returns the plain key when one was generated or reused."""
    if settings.api_key_sha256:
        return None
    storage = Storage(settings.storage, settings.storage_options)
    path = storage.path(KEY_FILE)
    if storage.exists(path):
        with storage.fs.open(path, "rb") as f:
            key = f.read().decode().strip()
    else:
        key = secrets.token_urlsafe(32)
        storage.write_bytes_atomic(path, key.encode() + b"\n")
    if storage.is_local:
        os.chmod(path, 0o600)
    settings.api_key_sha256.append(hash_key(key))
    return key


def serve_command(args: argparse.Namespace) -> int:
    from ray import serve

    from serve_app.deployment import APP_NAME, app_builder, start_serve
    from serve_app.local_ray import start_local_ray

    overrides = {}
    if args.storage:
        overrides["storage"] = args.storage
    settings = Settings(**overrides)
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
        print(f"API key: {generated_key}   (send it as the x-api-key header)", flush=True)
    else:
        print("API key: from PIXYZ_API_KEY / PIXYZ_API_KEY_SHA256", flush=True)

    if args.address:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    drain(settings)
    print("Stopping: Serve, then the local Ray cluster...", flush=True)
    # A terminal's Ctrl-C also reaches Ray's own processes, and Serve's graceful
    # shutdown then waits on a dead raylet: give it a deadline, then end the cluster.
    stopper = threading.Thread(target=serve.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout=SHUTDOWN_SECONDS)
    if stopper.is_alive():
        print(f"Serve did not stop within {SHUTDOWN_SECONDS} s; ending the cluster", flush=True)
    ray.shutdown()
    print("Stopped.", flush=True)
    return 0


def drain(settings: Settings) -> None:
    """Let running jobs finish (up to `drain_seconds`); the rest resume on the next start."""
    import ray

    from tasks.jobstore import get_or_create_store

    print(
        f"Draining: no new jobs; waiting up to {settings.drain_seconds:g} s for running ones...",
        flush=True,
    )
    try:
        store = get_or_create_store(settings)
        remaining = ray.get(
            store.drain.remote(settings.drain_seconds), timeout=settings.drain_seconds + 15
        )
    except Exception as exc:  # shutting down regardless; say why draining was cut short
        print(f"Draining stopped early: {type(exc).__name__}: {exc}", flush=True)
        return
    if remaining:
        print(
            f"{remaining} job(s) still running: they will run again on the next start", flush=True
        )


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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
