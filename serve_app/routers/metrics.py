"""`GET /metrics`: Prometheus text for the whole service (kept in the JobStore)."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from serve_app.auth import key_unless_open
from serve_app.errors import documented

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Depends(key_unless_open)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **documented(401),
    },
    summary="Retrieve Prometheus metrics.",
)
async def metrics(request: Request) -> Response:
    await request.app.state.http_metrics.flush()
    body = await request.app.state.store.call("metrics_text")
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
