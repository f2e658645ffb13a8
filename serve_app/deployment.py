"""The Ray Serve side: a thin ingress deployment around `build_app`.

`app_builder(args)` is the import path for `serve run` / Serve config files
(`serve_app.deployment:app_builder`); `pixyz serve` calls it too.
"""

from __future__ import annotations

from ray import serve

from serve_app.app import build_app
from serve_app.store_client import StoreClient
from tasks.settings import Settings

APP_NAME = "pixyz"

# Per-request access logs cost measurable CPU in the proxy and the replica at
# hundreds of polls per second; `/metrics` counts every request instead.
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


def start_serve(host: str, port: int) -> None:
    """Start Serve's controller and HTTP proxy on `host:port` (quiet logs)."""
    serve.start(http_options={"host": host, "port": port}, logging_config=QUIET_LOGS)


@serve.deployment(
    ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200, logging_config=QUIET_LOGS
)
@serve.ingress()
class PixyzIngress:
    """Holds the settings and the JobStore client; the FastAPI app does the rest."""

    def __init__(self, settings: dict):
        self.settings = Settings.model_validate(settings)
        self.store = StoreClient(self.settings)

    def __serve_build_asgi_app__(self):
        return build_app(self.settings, self.store)


def app_builder(args: dict | None = None):
    """Serve application from settings (`args` override `PIXYZ_*` environment variables)."""
    unknown = sorted(set(args or {}) - set(Settings.model_fields))
    if unknown:  # Settings ignores unknown keys; a typo in a Serve config must not vanish
        raise ValueError(f"unknown setting(s) in the application args: {', '.join(unknown)}")
    settings = Settings(**(args or {}))
    return PixyzIngress.options(num_replicas=settings.num_replicas).bind(
        settings.model_dump(mode="json")
    )
