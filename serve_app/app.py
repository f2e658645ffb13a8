"""The FastAPI application: routers, error bodies, auth'd docs, metrics, the web console — no Ray code.

`build_app(settings, store)` is called once per replica (by the Serve
deployment) with explicit settings and a JobStore client; tests can call it
too. Business logic lives in the routers and in `tasks/`.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse

from serve_app.auth import KeyRing, RateLimits, key_unless_open
from serve_app.errors import install_handlers
from serve_app.http_metrics import HttpMetrics, MetricsMiddleware
from serve_app.routers import (
    backend,
    dev,
    formats,
    jobs,
    metrics,
    outputs,
    processes,
    root,
    tus,
    ui,
    uploads,
)
from tasks.processes import discover
from tasks.settings import Settings
from tasks.storage import Storage

DESCRIPTION = "API for managing PiXYZ processes and jobs."


def build_app(settings: Settings, store) -> FastAPI:
    app = FastAPI(
        title="PiXYZ API",
        version=root.API_VERSION,
        description=DESCRIPTION,
        terms_of_service="https://unity.com/products/pixyz",
        contact={"name": "#devs-pixyz", "url": "https://www.pixyz-software.com/"},
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.keys = KeyRing(settings.api_key_sha256, settings.api_keys_file)
    app.state.rate_limits = RateLimits(settings.requests_per_minute_per_key)
    app.state.store = store
    app.state.storage = Storage(settings.storage, settings.storage_options)
    app.state.processes = discover(settings.process_path, settings.allow_scripts)
    app.state.callbacks_received = []
    app.state.http_metrics = HttpMetrics(store)

    install_handlers(app)
    for module in (root, processes, formats, jobs, outputs, backend, metrics, uploads, tus):
        app.include_router(module.router)
    if settings.dev_routes:
        app.include_router(dev.router)
    if settings.ui:
        ui.mount(app)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(key_unless_open)])
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(key_unless_open)])
    async def swagger(request: Request):
        return get_swagger_ui_html(openapi_url="/openapi.json", title="PiXYZ API")

    app.add_middleware(MetricsMiddleware, metrics=app.state.http_metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "HEAD", "PATCH"],
            allow_headers=["x-api-key", "content-type", "last-event-id", *tus.REQUEST_HEADERS],
            expose_headers=["content-disposition", "retry-after", *tus.RESPONSE_HEADERS],
            max_age=600,
        )
    return app
