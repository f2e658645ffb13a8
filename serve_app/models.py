"""The wire contract: pydantic models for every JSON body the API sends or takes.

They document the API in `/docs` (OpenAPI) and match `wire-compat.md`: field
names, types and nullability are what existing PiXYZ API clients parse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: int = Field(examples=[404])
    message: str = Field(examples=["Not Found"])
    details: str = Field(examples=["no job with uuid 5b2c..."])


class ErrorBody(BaseModel):
    detail: ErrorDetail


class JobShort(BaseModel):
    uuid: str
    name: str | None = None
    status: str = Field(
        examples=["SENT"],
        description="SENT, PENDING, RECEIVED, STARTED, RUNNING, RETRY, SUCCESS, FAILURE, REVOKED or UNKNOWN",
    )
    progress: int | None = Field(
        default=None, description="0-100, or null when the process reports none"
    )
    error: str | None = None


class JobList(BaseModel):
    jobs: list[JobShort]


class TimeInfo(BaseModel):
    request: str
    started: str | None = None
    stopped: str | None = None


class Step(BaseModel):
    duration: float = Field(description="seconds")
    info: str


class JobDetails(JobShort):
    process: str
    queue: str
    time_info: TimeInfo
    steps: list[Step]
    retry: int
    result: dict[str, Any] | None = None
    traceback: str | None = None
    warnings: list[str] = []
    children: list[dict[str, Any]] = []
    node: str | None = Field(
        default=None, description="Ray node id that ran the job's last attempt"
    )
    callback: dict[str, Any] | None = Field(
        default=None, description="delivery of config.callback_url, once attempted"
    )


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


class ProcessList(BaseModel):
    processes: list[str]


class ProcessDoc(BaseModel):
    doc: str


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
