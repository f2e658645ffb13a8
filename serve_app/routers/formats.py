"""`GET /formats`: which file extensions this server reads and writes, and what each keeps.

Answered from the format registry (`tasks/steps/io/registry.py`), so it cannot drift from
the code: a client can ask before uploading a 2 GB file. Open like `/processes`.
"""

from fastapi import APIRouter, Depends

from serve_app.auth import key_unless_open
from serve_app.errors import documented
from serve_app.models import FormatInfo, FormatList

router = APIRouter(prefix="/formats", tags=["formats"], dependencies=[Depends(key_unless_open)])


@router.get(
    "",
    response_model=FormatList,
    responses=documented(401),
    summary="List the file formats this server reads and writes.",
)
async def list_formats() -> FormatList:
    from tasks.steps.io.registry import FORMATS, readable_extensions, writable_extensions

    formats = [
        FormatInfo(
            name=spec.name,
            extensions=list(spec.extensions),
            read=spec.readable,
            write=spec.writable,
            holds=sorted(spec.holds),
            up_axis=spec.up_axis,
            metres_per_unit=spec.unit,
        )
        for spec in FORMATS
    ]
    return FormatList(
        readable=readable_extensions(), writable=writable_extensions(), formats=formats
    )
