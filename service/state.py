"""Typed application state: every shared object has one ``web.AppKey``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from service.queue.events import EventHub
from service.queue.store import Queue
from service.registry import Operation
from service.runtime.config import Settings
from service.runtime.metrics import Metrics
from service.runtime.redis import Client
from service.worker.worker import Worker
from webhooks import Dispatcher, WebhookStore


@dataclass(frozen=True)
class Roles:
    """Which roles this process runs."""

    api: bool = True
    worker: bool = False
    dispatcher: bool = False


@dataclass
class Runtime:
    """Mutable facts about the running process (readiness)."""

    worker_running: bool = False
    dispatcher_running: bool = False


settings_key = web.AppKey("settings", Settings)
roles_key = web.AppKey("roles", Roles)
runtime_key = web.AppKey("runtime", Runtime)
redis_key: web.AppKey[Client] = web.AppKey("redis")
queue_key = web.AppKey("queue", Queue)
operations_key = web.AppKey("operations", dict[str, Operation])
metrics_key = web.AppKey("metrics", Metrics)
hub_key = web.AppKey("hub", EventHub)
worker_key = web.AppKey("worker", Worker)
codes_key = web.AppKey("codes", dict[str, Operation])
CallbackChecker = Callable[[str], Awaitable[None]]
callback_checker_key: web.AppKey[CallbackChecker] = web.AppKey("callback_checker")
webhook_store_key = web.AppKey("webhook_store", WebhookStore)
dispatcher_key = web.AppKey("dispatcher", Dispatcher)
# Synchronous waits in progress per client (``server.max_sync_waits_per_client``).
sync_waits_key = web.AppKey("sync_waits", dict[str, int])
