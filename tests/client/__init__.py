"""Tests of the Python client (client/) against the real service."""
