"""``make soak``'s parts: the stack it starts, its load, its readers, its table and verdicts."""
