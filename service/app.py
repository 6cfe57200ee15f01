"""The application factory: app state, cleanup contexts and the fixed shutdown order."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from service.http import batch as batch_api
from service.http import console, monitor, sse, system
from service.http import requests as requests_api
from service.http import submit as api
from service.http import webhooks as webhook_api
from service.http.auth import make_authenticator
from service.http.cors import setup_cors
from service.http.errors import Problem
from service.http.routing import add_guarded, add_unmatched
from service.queue import presence
from service.queue.events import EventHub
from service.queue.store import Queue
from service.registry import build_operations, by_code
from service.runtime.config import ConfigError, Settings
from service.runtime.embedded import EmbeddedRedis
from service.runtime.metrics import Metrics
from service.runtime.redis import connect
from service.runtime.tasks import stop
from service.state import (
    CallbackChecker,
    Roles,
    Runtime,
    callback_checker_key,
    codes_key,
    dispatcher_key,
    hub_key,
    metrics_key,
    operations_key,
    queue_key,
    redis_key,
    roles_key,
    runtime_key,
    settings_key,
    sync_waits_key,
    webhook_store_key,
    worker_key,
)
from service.worker.watchdog import LoopWatchdog
from service.worker.worker import Worker
from webhooks import Dispatcher, TargetRefused, WebhookStore, check_url

log = logging.getLogger(__name__)


def check_open_mode(settings: Settings) -> None:
    """With no API keys the service runs open, so only on a loopback address."""
    if settings.auth.clients:
        return
    if "*" in settings.server.cors_origins:
        # Open and readable from any origin: any web page a user of this machine opens
        # could drive the API and read its secrets.
        raise ConfigError(
            'server.cors_origins: "*" needs API keys (auth.clients); with none, list the '
            "origins allowed"
        )
    host = settings.server.host
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"server.host: {host!r} is not a loopback address, and auth.clients is empty; "
            "configure API keys before listening beyond this machine"
        )


def create_app(settings: Settings, roles: Roles | None = None) -> web.Application:
    """Build the application for the given roles (the API by default)."""
    roles = roles or Roles()
    if roles.api:
        check_open_mode(settings)
    operations = build_operations(settings)
    max_body = max(
        [settings.server.max_body_bytes, settings.server.max_batch_bytes]
        + [op.max_input_bytes or 0 for op in operations.values()]
    )
    app = web.Application(client_max_size=max_body)
    authenticate = make_authenticator(settings)
    setup_cors(app, settings)
    app[settings_key] = settings
    app[roles_key] = roles
    app[runtime_key] = Runtime()
    app[operations_key] = operations
    app[codes_key] = by_code(operations)
    app[metrics_key] = Metrics()
    if app[metrics_key].shared_dir is not None:
        # First in, so last out: the counts of the final drain are flushed too.
        app.cleanup_ctx.append(metrics_ctx)
    app.cleanup_ctx.append(redis_ctx)
    if roles.api:
        app.cleanup_ctx.append(hub_ctx)
        app.cleanup_ctx.append(sse.streams_ctx)
        app.on_shutdown.append(sse.close_streams)
        # In order: /v1/queue/events and /v1/webhooks/… must not match /v1/{op}/{request_id}.
        for routes in (
            system.routes,
            sse.routes,
            webhook_api.routes,
            console.routes,
            api.operation_routes(list(operations)),
            batch_api.operation_routes(list(operations)),
            requests_api.routes,
            batch_api.routes,
            api.routes,
        ):
            add_guarded(app, routes, authenticate)
        add_unmatched(app, authenticate)
        app[callback_checker_key] = _callback_checker(settings)
        app[sync_waits_key] = {}
    if roles.worker:
        app.cleanup_ctx.append(worker_ctx)
    if roles.dispatcher:
        app.cleanup_ctx.append(dispatcher_ctx)
    if roles.worker or roles.dispatcher:
        app.cleanup_ctx.append(presence_ctx)
    return app


def _callback_checker(settings: Settings) -> CallbackChecker:
    allow = settings.webhooks.allow_networks

    async def check(url: str) -> None:
        try:
            await check_url(url, allow)
        except TargetRefused as exc:
            raise Problem(
                422,
                f"Callback-Url is not allowed: {exc.reason}",
                slug="target-refused",
                header="Callback-Url",
            ) from None

    return check


METRICS_FLUSH_SECONDS = 1.0


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """In a process group: flush the buffered counts to the shared files once a second."""
    metrics = app[metrics_key]

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_SECONDS)
            metrics.flush()

    task = asyncio.create_task(flush_forever(), name="metrics-flush")
    try:
        yield
    finally:
        await stop(task)
        metrics.flush()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to Redis (starting the embedded server when no URL is configured)."""
    settings = app[settings_key]
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url
    if not url:
        embedded = EmbeddedRedis(
            Path(settings.redis.data_dir), appendfsync=settings.redis.appendfsync
        )
        await asyncio.to_thread(embedded.start)
        url = embedded.url
        log.info("embedded server: data in %s, url %s", embedded.data_dir, url)
    client = connect(url, settings.redis.max_connections, cluster=settings.redis.cluster)
    app[redis_key] = client
    app[queue_key] = Queue(
        client,
        shards=settings.shards,
        wait_replicas=settings.redis.wait_replicas,
        wait_timeout=settings.redis.wait_timeout_seconds,
    )
    shards = settings.shards
    app[webhook_store_key] = WebhookStore(
        client,
        list(settings.operations),
        retention=settings.webhooks.delivery_retention_seconds,
        max_endpoints=settings.webhooks.max_endpoints_per_client,
        shards=shards,
        partitions=settings.webhooks.partitions,
    )
    try:
        yield
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """One events subscription for the whole process."""
    operations = app[operations_key]
    hub = EventHub(app[redis_key], list(operations), app[settings_key].shards)
    await hub.start()
    app[hub_key] = hub
    yield
    await hub.stop()


async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the webhook dispatcher."""
    settings = app[settings_key]
    store = app[webhook_store_key]
    metrics = app[metrics_key]
    await store.rehook()
    # With server.public_url set, a succeeded event's monitor names its final resource too.
    base = settings.server.public_url.rstrip("/") or None
    dispatcher = Dispatcher(
        app[redis_key],
        settings.webhooks,
        list(settings.operations),
        lambda op, record: monitor.render(op, record, base=base),
        store=store,
        on_attempt=lambda outcome: metrics.webhook_attempts.labels(outcome).inc(),
        shards=settings.shards,
    )
    app[dispatcher_key] = dispatcher
    task = asyncio.create_task(dispatcher.run(), name="dispatcher")
    app[runtime_key].dispatcher_running = True
    try:
        yield
    finally:
        app[runtime_key].dispatcher_running = False
        await dispatcher.drain(min(settings.server.shutdown_grace_seconds, 20.0))
        await stop(task)


async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Announce this process's worker and dispatcher every few seconds, for the console."""
    redis = app[redis_key]
    ids: list[str] = []

    async def announce_forever() -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis away: the next round tries again
                for pid, info in _describe(app).items():
                    if pid not in ids:
                        ids.append(pid)
                    await presence.announce(redis, pid, info)
            await asyncio.sleep(presence.INTERVAL)

    task = asyncio.create_task(announce_forever(), name="presence")
    try:
        yield
    finally:
        await stop(task)
        for pid in ids:
            with contextlib.suppress(Exception):
                await presence.withdraw(redis, pid)


def _describe(app: web.Application) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    worker = app.get(worker_key)
    if worker is not None:
        out[worker.id] = worker.describe()
    dispatcher = app.get(dispatcher_key)
    if dispatcher is not None:
        settings = app[settings_key].webhooks
        out[dispatcher.consumer] = {
            "kind": "dispatcher",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "operations": list(dispatcher.operations),
            "concurrency": settings.concurrency,
            "sending": dispatcher.sending,
        }
    return out


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run a worker; on shutdown stop claiming, drain, hand back what is left."""
    settings = app[settings_key]
    worker = Worker(app[queue_key], app[operations_key], settings.worker, metrics=app[metrics_key])
    app[worker_key] = worker
    watchdog = LoopWatchdog(settings.worker.blocked_loop_seconds)
    watchdog.start()
    task = asyncio.create_task(worker.run(), name="worker")
    app[runtime_key].worker_running = True
    try:
        yield
    finally:
        app[runtime_key].worker_running = False
        await worker.shutdown(settings.server.shutdown_grace_seconds)
        await stop(task)
        watchdog.stop()
