"""Process plumbing: settings, the embedded server, Redis connections, batching, outages, metrics."""
