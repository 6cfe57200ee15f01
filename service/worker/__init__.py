"""The worker: claim loop, supervision, process pool, loop watchdog, the handler context."""
