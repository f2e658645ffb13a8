"""checksum: the size and SHA-256 of the job's input file, as the job reads it."""

import hashlib
import os


def main(pc, params):
    """Result: `{"bytes": <size>, "sha256": <hex digest>}` of the input file."""
    path = pc.get_input_file()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}
