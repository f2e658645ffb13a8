"""`POST /dev/callback`: a receiver to test completion callbacks against.

It takes the API key, or instead a valid `X-Pixyz-Signature` (so the service's
own signed callbacks reach it), logs the body and keeps the last ones for
`GET /dev/callback`. Those are the final details of whichever jobs named this
receiver, whoever created them, so reading them back needs an admin key.
"""

import json
import logging

from fastapi import APIRouter, Depends, Request

from serve_app.auth import check_key, require_role
from serve_app.errors import ApiError, documented
from tasks.callbacks import SIGNATURE_HEADER, verify

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/dev", tags=["dev"])

RECEIVED_MAX = 100
CALLBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "example": {"infos": {"status": "SUCCESS"}}}
            }
        },
    }
}


@router.post(
    "/callback",
    responses=documented(400, 401, 422),
    openapi_extra=CALLBACK_BODY,
    summary="Helper endpoint to test callbacks (development only).",
)
async def callback(request: Request) -> dict:
    raw = await request.body()
    secret = request.app.state.settings.callback_secret
    signature = request.headers.get(SIGNATURE_HEADER)
    signed = bool(secret and signature and verify(raw, secret, signature))
    if not signed:
        check_key(request)
    try:
        payload = json.loads(raw or b"null")
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body is not JSON: {exc.msg}") from exc
    except UnicodeDecodeError as exc:  # json.loads decodes bytes first; not a JSONDecodeError
        raise ApiError(400, f"body is not UTF-8 JSON: {exc.reason}") from exc
    if not isinstance(payload, dict):
        raise ApiError(422, 'body must be a JSON object, e.g. {"infos": {...}}')
    logger.info("callback received (%s): %s", "signed" if signed else "with key", payload)
    received = request.app.state.callbacks_received
    received.append({"payload": payload, "signature_valid": signed})
    del received[:-RECEIVED_MAX]
    return {"received": True, "signature_valid": signed}


@router.get(
    "/callback",
    dependencies=[Depends(require_role("admin"))],
    responses=documented(401, 403),
    summary="The last callbacks this replica received (development only; admin keys).",
)
async def callbacks_received(request: Request) -> dict:
    return {"callbacks": request.app.state.callbacks_received}
