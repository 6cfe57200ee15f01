"""Helpers shared by the tests: role processes, receivers, stream readers, handlers."""
