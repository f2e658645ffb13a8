"""`GET /`: the welcome line clients use as a health check."""

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from serve_app.auth import key_unless_open
from serve_app.errors import documented_as_json

API_VERSION = "1.0.5"

router = APIRouter(tags=["root"])


@router.get(
    "/",
    response_class=PlainTextResponse,
    dependencies=[Depends(key_unless_open)],
    responses=documented_as_json(401),
    summary="Retrieve the root of the API.",
)
async def root() -> str:
    return f"Welcome to PiXYZ API v{API_VERSION}!"
