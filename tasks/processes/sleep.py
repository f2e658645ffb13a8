"""sleep: a job that waits, to exercise progress, time limits and cancellation."""

import time


def main(pc, params):
    """Sleep for `params.duration` seconds (default 1), reporting progress every second.

    Params:
    - `duration` (number, seconds, 0-86400, default 1).

    Result: `{"slept": <seconds>}`.
    """
    duration = float(params.get("duration", 1))
    if not 0 <= duration <= 86400:
        raise ValueError(f"duration must be between 0 and 86400 seconds, got {duration}")
    ticks = max(1, int(duration))
    pc.progress_set_total(ticks)
    start = time.monotonic()
    for tick in range(1, ticks + 1):
        time.sleep(max(0.0, start + duration * tick / ticks - time.monotonic()))
        pc.progress_next(f"Slept {duration * tick / ticks:.1f} of {duration:g} s")
    return {"slept": duration}
