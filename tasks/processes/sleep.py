"""sleep: a job that waits, to exercise progress, time limits and cancellation."""

import time

from pydantic import Field

from tasks.processes._params import ProcessParams


class Params(ProcessParams):
    duration: float = Field(1.0, ge=0, le=86400, description="Seconds to sleep")


def main(pc, params):
    """Sleep for `params.duration` seconds, reporting progress every second.

    Result: `{"slept": <seconds>}`.
    """
    duration = Params.model_validate(params).duration
    ticks = max(1, int(duration))
    pc.progress_set_total(ticks)
    start = time.monotonic()
    for tick in range(1, ticks + 1):
        time.sleep(max(0.0, start + duration * tick / ticks - time.monotonic()))
        pc.progress_next(f"Slept {duration * tick / ticks:.1f} of {duration:g} s")
    return {"slept": duration}
