"""acceptd: the service side (API, queue, workers)."""
