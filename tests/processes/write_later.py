"""An operator process that writes one output file after a pause (tests fill the disk meanwhile)."""

import time


def main(pc, params):
    """Sleep `params.seconds` (default 1), then write `params.bytes` (default 1 MiB) to `blob.bin`."""
    time.sleep(float(params.get("seconds", 1)))
    with open(pc.get_output_dir("blob.bin"), "wb") as f:
        f.write(b"\0" * int(params.get("bytes", 1024 * 1024)))
    return {"written": True}
