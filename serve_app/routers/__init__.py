"""One router per resource: root, processes, jobs, outputs, uploads, backend, dev, metrics."""
