"""Job execution: the JobStore actor, the per-job runner, processes and the geometry toolbox."""
