"""The wire contract: pydantic models for every JSON body the API sends or takes.

They document the API in `/docs` (OpenAPI) and match `wire-compat.md`: field
names, types and nullability are what existing PiXYZ API clients parse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# The job views are the record's own models: one definition for the store and the wire.
from tasks.records import JobDetails, JobShort, Step, TimeInfo  # noqa: F401


class ErrorDetail(BaseModel):
    code: int = Field(examples=[404])
    message: str = Field(examples=["Not Found"])
    details: str = Field(examples=["no job with uuid 5b2c..."])


class ErrorBody(BaseModel):
    detail: ErrorDetail


class JobList(BaseModel):
    jobs: list[JobShort]


class OutputList(BaseModel):
    outputs: list[str]


class TaskMeta(BaseModel):
    status: str
    result: Any = None
    traceback: str | None = None
    children: list[Any] = []
    parent_id: str | None = None
    task_id: str
    date_done: str | None = None


class FormatInfo(BaseModel):
    name: str = Field(examples=["STEP"])
    extensions: list[str] = Field(examples=[["step", "stp"]], description="Lower case, no dot")
    read: bool = Field(description="Uploads in this format can be read")
    write: bool = Field(description="`convert_file` and friends can write it (`params.extension`)")
    holds: list[str] = Field(
        description="What this server keeps of such a file: hierarchy, materials, textures,"
        " instances, units, points"
    )
    up_axis: str = Field(description="The up axis assumed when the file declares none: y or z")
    metres_per_unit: float = Field(description="The unit assumed when the file declares none")


class FormatList(BaseModel):
    readable: list[str] = Field(description="Every extension an upload may have (archives aside)")
    writable: list[str] = Field(description="Every extension an output may have")
    formats: list[FormatInfo]


class ProcessList(BaseModel):
    processes: list[str]


class ProcessDoc(BaseModel):
    doc: str = Field(description="The process's documentation, its params listed at the end")
    queue: str | None = Field(None, description="The queue its jobs run on unless config.queue")
    params_schema: dict | None = Field(
        None,
        description="JSON Schema of `params` (checked at submit: a wrong one is a 400);"
        " null: the process declares no Params model (any JSON object is handed on)",
    )


class UploadRequest(BaseModel):
    filename: str = Field(
        description="Name of the file you will PUT (its extension picks the reader)"
    )
    size: int = Field(
        ge=0,
        description="Bytes you will PUT: the URL accepts a body of exactly this length, and no"
        " more than the server's upload limit (413)",
    )


class UploadTicket(BaseModel):
    upload_id: str
    url: str = Field(description="Presigned URL: PUT the file's bytes there")
    method: str = "PUT"
    file_url: str = Field(
        description="Send this as `file_url` in POST /jobs once the PUT succeeded"
    )
    expires_in: int
