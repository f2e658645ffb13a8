"""The zip of all a job's outputs, built once on first request and published atomically."""

from __future__ import annotations

import os
import zipfile

import ray

from tasks.sandbox.scratch import scratch_folder
from tasks.storage import Storage

# Already-compressed outputs gain nothing from deflate and cost CPU.
_STORED = (".png", ".jpg", ".jpeg", ".zip", ".glb", ".usdz", ".ktx2", ".gz", ".webp", ".3mf")


@ray.remote(num_cpus=0.25, max_retries=1)
def build_archive(
    storage: Storage, job_id: str, outputs: list[str], scratch_dir: str | None = None
) -> int:
    """Write `jobs/<id>/archive.zip`; returns its size. Readers never see a partial file."""
    with scratch_folder("archive", scratch_dir) as tmp:
        local = os.path.join(tmp, "archive.zip")
        with zipfile.ZipFile(local, "w", allowZip64=True) as zf:
            for rel in outputs:
                method = (
                    zipfile.ZIP_STORED if rel.lower().endswith(_STORED) else zipfile.ZIP_DEFLATED
                )
                info = zipfile.ZipInfo(rel)
                info.compress_type = method
                with storage.fs.open(storage.job_path(job_id, "outputs", rel), "rb") as src:
                    with zf.open(info, "w", force_zip64=True) as dst:
                        while chunk := src.read(1024 * 1024):
                            dst.write(chunk)
        storage.put_file(local, storage.job_path(job_id, "archive.zip"))
        return os.path.getsize(local)
