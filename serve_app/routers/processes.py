"""`GET /processes` and `GET /processes/{name}`: what jobs can run, and how."""

from fastapi import APIRouter, Depends, Request

from serve_app.auth import key_unless_open
from serve_app.errors import ApiError, documented
from serve_app.models import ProcessDoc, ProcessList
from tasks.processes import params_model
from tasks.processes._params import params_text

router = APIRouter(prefix="/processes", tags=["processes"], dependencies=[Depends(key_unless_open)])


@router.get(
    "",
    response_model=ProcessList,
    responses=documented(401),
    summary="Retrieve the list of all available scheduler processes.",
)
async def list_processes(request: Request) -> ProcessList:
    return ProcessList(processes=sorted(request.app.state.processes))


@router.get(
    "/{process_name}",
    response_model=ProcessDoc,
    responses=documented(401, 404, 422),
    summary="Retrieve documentation for a specific process.",
)
async def process_doc(process_name: str, request: Request) -> ProcessDoc:
    spec = request.app.state.processes.get(process_name)
    if spec is None:
        known = ", ".join(sorted(request.app.state.processes))
        raise ApiError(404, f"unknown process '{process_name}'; available: {known}")
    model = params_model(spec)
    schema = model.model_json_schema() if model is not None else None
    doc = f"Process '{process_name}' documentation:\n\n{spec.doc.rstrip()}{params_text(schema)}"
    return ProcessDoc(doc=doc, queue=spec.queue, params_schema=schema)
