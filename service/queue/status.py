"""A request's status: the five states of CONTRACT.md section 3."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a request is; members compare equal to the strings stored in Redis."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
"""States a request never leaves (its record then expires after the result TTL)."""
