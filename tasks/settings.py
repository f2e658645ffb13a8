"""The service's one settings object, read from `PIXYZ_*` environment variables.

Built explicitly (`Settings()` or `Settings.model_validate(...)`) by the CLI or
the Serve application builder and passed down; nothing reads the environment
at import time. The Serve replicas and the JobStore receive the same values as
a plain dict (`settings.model_dump()`), so one cluster never mixes two configs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tasks.sandbox.egress import parse_networks


def hash_key(plain: str) -> str:
    """SHA-256 hex digest of an API key: the only form the service stores."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


class Settings(BaseSettings):
    """Everything an operator can set. Environment: `PIXYZ_<FIELD>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="PIXYZ_", env_file=None, extra="ignore")

    storage: str = "./var/storage"
    """Root of all job files and state: a folder, `file://...`, `s3://bucket/prefix` or any fsspec URL."""

    storage_options: dict = Field(default_factory=dict)
    """Extra keyword arguments for the fsspec filesystem (e.g. `{"endpoint_url": ...}` for S3)."""

    api_key: str = Field(default="", repr=False)
    """A plain key to accept; hashed at once and never kept or passed on in the clear."""

    api_key_sha256: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Accepted admin keys as SHA-256 hex digests (env: comma-separated)."""

    api_keys_file: str = ""
    """A file of `<sha256 hex> <read|submit|script|admin> [label]` lines, re-read when it changes."""

    open_routes: bool = True
    """Serve `/`, `/processes`, `/processes/{name}`, `/metrics`, `/docs` without a key (clients rely on it)."""

    max_upload_bytes: int = 2 * 1024**3
    """Largest accepted upload (file + script) in bytes; larger requests get 413."""

    upload_expiry_hours: float = 24.0
    """Presigned uploads (`POST /uploads`, S3) that no job claimed are deleted after this long."""

    upload_chunk_bytes: int = 8 * 1024**2
    """Uploads are written to storage in chunks of this size."""

    download_chunk_bytes: int = 1024**2
    """Downloads are streamed in chunks of this size (≥ 1 MiB measured 2× faster than 64 KiB)."""

    requests_per_minute_per_key: int = 0
    """Requests a key may make per minute (over that: 429 with Retry-After); 0 means no limit."""

    jobs_in_progress_per_key: int = 0
    """Unfinished jobs a non-admin key may have at once (over that: 429); 0 means no limit."""

    allow_scripts: bool = False
    """Accept `custom` jobs that run an uploaded Python script (off: 403)."""

    script_memory_bytes: int = 4 * 1024**3
    """Address-space limit of a custom script's process (MemoryError past it)."""

    script_file_bytes: int = 4 * 1024**3
    """Largest file a custom script may write."""

    script_open_files: int = 1024
    """Open-file limit of a custom script's process."""

    script_processes: int = 64
    """Processes (and threads) a custom script may run at once; a fork bomb stops there."""

    script_disk_bytes: int = 8 * 1024**3
    """Bytes a custom script may write into its scratch folder in all (checked twice a second)."""

    script_network: bool = False
    """Let custom scripts use the network (off: they run in an empty network namespace)."""

    process_path: str = ""
    """A folder of extra process modules (`<name>.py` with `main(pc, params)`) to offer beside the built-ins."""

    default_time_limit: float = 3600.0
    """Seconds a job may run when `config.time_limit` is not given."""

    max_retries: int = 1
    """Times a job is re-run after its worker or node died (user errors are never retried)."""

    retry_timed_out_jobs: bool = False
    """Run a job that hit its time limit once more, on `retry_queue` (the anchor's retry on
    `gpuhigh`), unless its `config.retry_on_timeout` says false. Off: only jobs asking for it
    with `config.retry_on_timeout: true` are retried."""

    retry_queue: str = "gpuhigh"
    """The bigger queue re-runs go to: after a crash (when it has nodes) and after a time limit
    (`retry_timed_out_jobs`). One of `queue_resources`, or empty for none."""

    timeout_retry_time_limit: float = 0.0
    """Seconds the retry may run; 0: the job's own time limit again."""

    callback_secret: str = ""
    """When set, completion callbacks carry `X-Pixyz-Signature: sha256=<HMAC-SHA256 of the body>`."""

    callback_attempts: int = 5
    """Delivery attempts per callback (exponential backoff from 0.5 s)."""

    callback_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Networks (CIDR, e.g. `10.20.0.0/16`, `fd00::/8`) that completion callbacks may reach although
    they are loopback, private, link-local or otherwise not public. Empty (the default): callbacks
    go to public addresses only. Env: comma-separated, or a JSON list."""

    dev_routes: bool = False
    """Serve `POST/GET /dev/callback`, a callback receiver for trying integrations (keeps the
    last payloads in each replica's memory). Off: those routes are 404."""

    ui: bool = True
    """Serve the web console at `/ui` (static pages that call the API with the key the user
    enters; no power of their own). Off: `/ui` is 404."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (e.g. `https://viewer.example.com`) whose browser pages may call the API; `*` for
    any. Empty (the default): no CORS headers, so only same-origin pages can. Env: comma-separated."""

    namespace: str = "pixyz"
    """Ray namespace of the JobStore actor and the Serve application."""

    store_name: str = "pixyz-jobstore"
    """Name of the detached JobStore actor."""

    scratch_dir: str = ""
    """Local folder for job scratch space on workers (default: `pixyz-scratch` in the system temp folder)."""

    queue_resources: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "cpu": {"num_cpus": 1},
            "gpu": {"num_cpus": 1, "num_gpus": 0.25},
            "gpuhigh": {"num_cpus": 1, "resources": {"gpuhigh": 0.25}},
        }
    )
    """How each `config.queue` maps onto Ray resources (one place for the whole service)."""

    scalable_resources: dict[str, float] = Field(default_factory=dict)
    """Resources the autoscaler can add though no node has them yet, e.g. `{"GPU": 1, "gpuhigh": 1}`:
    queues needing them wait for a node to start instead of falling back to CPU workers."""

    allow_cpu_fallback: bool = True
    """Run `gpu`/`gpuhigh` work on CPU workers when no node has those resources (else: FAILURE)."""

    max_concurrent_jobs: dict[str, int] = Field(default_factory=dict)
    """Per-queue cap on running jobs, e.g. `{"gpu": 4}`; further jobs wait as PENDING (absent: no cap)."""

    retention_days: float = 0.0
    """Delete finished jobs (files and records) this many days after their request; 0 keeps them."""

    retention_check_seconds: float = 3600.0
    """How often the retention sweep runs."""

    drain_seconds: float = 60.0
    """On shutdown, how long to let running jobs finish before stopping (unfinished ones resume on restart)."""

    blender_executable: str = ""
    """Path of a Blender binary for FBX export (optional; without it FBX export says it is unavailable)."""

    basisu: str = ""
    """Path of Binomial's `basisu` encoder for KTX2 textures (`texture_format: "ktx2"`, the `web`
    preset); empty: `basisu` on PATH, else the one `scripts/setup.sh` installs in `.tools/`."""

    num_replicas: int = 1
    """API replicas (Serve deployments)."""

    @field_validator("api_key_sha256", mode="before")
    @classmethod
    def _split_hashes(cls, value):
        hashes = [v.lower() for v in _comma_list(value)]
        for digest in hashes:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"not a SHA-256 hex digest: {digest[:12]}...")
        return hashes

    @model_validator(mode="after")
    def _queues_hold_together(self) -> Settings:
        if "cpu" not in self.queue_resources:
            raise ValueError("queue_resources needs a 'cpu' queue (the default, and the fallback)")
        if self.retry_queue and self.retry_queue not in self.queue_resources:
            raise ValueError(
                f"retry_queue {self.retry_queue!r} is not in queue_resources"
                f" ({', '.join(self.queue_resources)}); set it to one of them or empty"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            return [origin.rstrip("/") for origin in _comma_list(value)]
        return value

    @field_validator("callback_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list of CIDR networks: {exc}") from None
            return _comma_list(text)
        return value

    @field_validator("callback_allowed_networks", mode="after")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        return [str(network) for network in parse_networks(value)]

    @model_validator(mode="after")
    def _hash_plain_key(self) -> Settings:
        if self.api_key:
            digest = hash_key(self.api_key)
            if digest not in self.api_key_sha256:
                self.api_key_sha256.append(digest)
            self.api_key = ""
        return self

    @field_validator("storage", mode="after")
    @classmethod
    def _absolute_local_storage(cls, value: str) -> str:
        # A relative folder must mean the same place for every Ray worker.
        if "://" not in value:
            return str(Path(value).expanduser().resolve())
        return value.rstrip("/")


def _comma_list(value):
    """`"a, b,"` -> `["a", "b"]` (how a list arrives from an environment variable); a list as is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
