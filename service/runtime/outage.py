"""One log line when Redis becomes unreachable for a component, one when it is back."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("acceptd.redis")


class Outage:
    """Tracks one component's view of Redis; logs transitions, not every failure."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.since: float | None = None

    @property
    def down(self) -> bool:
        """Whether the last attempt failed."""
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        """Record a failure; logs only the first of an outage."""
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: redis unreachable (%s); retrying", self.component, exc or type(exc))

    def succeeded(self) -> None:
        """Record a success; logs the end of an outage."""
        if self.since is not None:
            log.warning(
                "%s: redis reachable again after %.1f s",
                self.component,
                time.monotonic() - self.since,
            )
            self.since = None
