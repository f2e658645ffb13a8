"""pixyz_client: a Python SDK and the `pixyz` user commands for the PiXYZ API.

Talks HTTP only (httpx); it needs neither Ray nor the server's code. tqdm, when
installed, draws progress bars; pandas, when installed, makes `Client.batch`
return a DataFrame.

    from pixyz_client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        job = client.submit(process="generate_metadata", file="part.step")
        print(job.wait(raise_on_failure=True)["result"]["metadata"]["part_count"])
"""

from pixyz_client.client import DEFAULT_URL, Client
from pixyz_client.errors import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PixyzError,
    ServerError,
    TooEarly,
    TransferError,
    Unreachable,
    WaitTimeout,
)
from pixyz_client.job import FINAL, Job

__all__ = [
    "DEFAULT_URL",
    "FINAL",
    "AuthError",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "Job",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PixyzError",
    "ServerError",
    "TooEarly",
    "TransferError",
    "Unreachable",
    "WaitTimeout",
]
