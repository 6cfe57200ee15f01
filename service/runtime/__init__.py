"""Process plumbing: settings, embedded server, Redis connections, batching, outages, metrics."""
