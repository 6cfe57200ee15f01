"""Typed settings from ``config.yaml`` plus ``ACCEPTD_<SECTION>__<KEY>`` environment overrides.

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

ENV_PREFIX = "ACCEPTD_"


class ConfigError(ValueError):
    """A configuration problem, naming the bad key."""


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # A bulk submit's whole body (``POST /v1/{op}/batch``); each item's input still has the
    # operation's own limit.
    max_batch_bytes: int = 16_777_216
    max_streams: int = 10_000
    max_streams_per_client: int = 1_000
    # How long a client's events are kept for resuming its all-requests stream (exactly).
    stream_events_seconds: int = 60
    sync_wait_seconds: float = 30.0
    max_sync_waits_per_client: int = 100
    max_wait_seconds: float = 300.0
    shutdown_grace_seconds: float = 30.0
    processes: int = 1


@dataclass(frozen=True)
class RedisSettings:
    """Where state lives: a URL, or (empty) the embedded private server.

    With ``cluster``, ``url`` names one or more nodes of a Redis/Valkey Cluster
    (comma-separated); the client discovers the rest.
    """

    url: str = ""
    cluster: bool = False
    data_dir: str = "./data"
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    # Connections per process; each auto-pipeliner takes at most a quarter of them.
    max_connections: int = 100
    # Replicas that must confirm a submit's writes (WAIT) before it is acknowledged; 0: none.
    wait_replicas: int = 0
    # How long a submit waits for them before it is answered 503 instead.
    wait_timeout_seconds: float = 1.0


@dataclass(frozen=True)
class ClientSettings:
    """One API client and its bearer key."""

    name: str
    # One of the two: the key itself, or the hex SHA-256 of it (so the file need not hold it).
    key: str = ""
    key_sha256: str = ""
    rate_per_second: float | None = None
    burst: int | None = None
    admin: bool = False  # an operator: sees every client's requests and endpoints

    def key_digest(self) -> bytes:
        """The SHA-256 digest of the client's key, which requests are matched by."""
        if self.key_sha256:
            return bytes.fromhex(self.key_sha256)
        return hashlib.sha256(self.key.encode()).digest()


@dataclass(frozen=True)
class AuthSettings:
    """API keys; none configured means open, loopback-only, one anonymous client."""

    clients: list[ClientSettings] = field(default_factory=list)
    rate_per_second: float = 0.0
    burst: int = 100

    def limit_for(self, client: str) -> tuple[float, int]:
        """A client's submit rate limit: (tokens per second, bucket size); 0 means none."""
        return self._limits.get(client, (self.rate_per_second, self.burst))

    @functools.cached_property
    def _limits(self) -> dict[str, tuple[float, int]]:
        # Looked up on every submit: a dict, not a loop over the clients.
        return {
            c.name: (
                self.rate_per_second if c.rate_per_second is None else c.rate_per_second,
                self.burst if c.burst is None else c.burst,
            )
            for c in self.clients
        }


@dataclass(frozen=True)
class WorkerSettings:
    """Worker processes."""

    concurrency: int = 32
    lease_seconds: float = 30.0
    idle_check_seconds: float = 5.0
    blocked_loop_seconds: float = 1.0


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook dispatcher."""

    allow_networks: list[str] = field(default_factory=list)
    retry_schedule: list[float] = field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 36000]
    )
    jitter: float = 0.2
    timeout_seconds: float = 15.0
    disable_after_days: float = 5.0
    # Sends wait on the network: with 64 in flight a receiver answering in 200 ms would cap a
    # dispatcher at 320/s, and larger batches per event-loop tick also cost less CPU each.
    concurrency: int = 256
    per_endpoint_concurrency: int = 4
    max_endpoints_per_client: int = 100
    # How long a settled delivery (its payload snapshot and attempt log) is kept.
    delivery_retention_seconds: int = 7 * 86_400
    # Webhook state spread over this many hash tags (slots; docs/SCALING.md): None is 16 on a
    # cluster and 1 on one node. Every process must use the same; changing it moves the data
    # at the next dispatcher start (webhooks.store.WebhookStore.repartition).
    partitions: int | None = None


@dataclass(frozen=True)
class OperationSettings:
    """One operation: its handler and its limits."""

    handler: str
    timeout: float = 300.0
    attempts: int = 3
    retry_backoff: float = 1.0
    result_ttl: int = 86_400
    max_queue_depth: int = 100_000
    max_result_bytes: int = 10 * 1024 * 1024
    # Runs lost with their worker (lease expired) that a request survives: they use no attempt.
    max_lost: int = 2
    # Seconds a request may wait to start before it fails with queue-timeout (None: for ever);
    # a request's Queue-Timeout header overrides it.
    queue_timeout: float | None = None
    run_in: Literal["loop", "thread", "process"] | None = None
    max_input_bytes: int | None = None
    description: str = ""
    # Queue shards on different cluster slots (docs/contract-notes.md: order across shards).
    shards: int = 1


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    operations: dict[str, OperationSettings] = field(default_factory=dict)

    def replace(self, **sections: Any) -> Settings:
        """A copy with whole sections replaced (tests use it)."""
        return dataclasses.replace(self, **sections)

    @property
    def shards(self) -> dict[str, int]:
        """Each operation's queue shards (operations.<op>.shards)."""
        return {name: op.shards for name, op in self.operations.items()}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read ``path`` (YAML), apply environment overrides, validate; raise ConfigError."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded
    apply_env(raw, os.environ if environ is None else environ)
    return settings_from_dict(raw)


def settings_from_dict(raw: Mapping[str, Any]) -> Settings:
    """Build and validate Settings from plain data."""
    settings: Settings = _build(Settings, raw, "")
    _check(settings)
    return settings


def apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``ACCEPTD_SECTION__KEY[__SUBKEY]`` overrides; values parse as YAML scalars."""
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node: dict[str, Any] = raw
        for i, part in enumerate(parts[:-1]):
            if i == 1 and parts[0] == "operations":
                part = _match_operation(node, part)
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: cannot parse value: {exc}") from exc
        node[parts[-1]] = parsed


def _match_operation(ops: dict[str, Any], env_name: str) -> str:
    # Environment variable names cannot hold dashes; match "image_thumbnails" to "image-thumbnails".
    for existing in ops:
        if existing.replace("-", "_").lower() == env_name:
            return existing
    return env_name.replace("_", "-")


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_join(where, str(unknown[0]))}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in raw:
            kwargs[name] = _coerce(hints[name], raw[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_optional(typing.get_args(tp), value, where)
    if origin is Literal:
        return _coerce_literal(typing.get_args(tp), value, where)
    if origin is list:
        return _coerce_list(typing.get_args(tp)[0], value, where)
    if origin is dict:
        return _coerce_dict(typing.get_args(tp)[1], value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)  # type: ignore[arg-type]
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover
    return scalar(value, where)


def _coerce_optional(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    return _coerce(inner[0], value, where)


def _coerce_literal(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if isinstance(value, bool) and all(isinstance(a, str) for a in args):
        value = "yes" if value else "no"  # YAML 1.1 reads a bare no/yes as a boolean
    if value not in args:
        choices = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{where}: expected one of {choices}, got {_show(value)}")
    return value


def _coerce_list(item: Any, value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        # From the environment: "0.2,0.5,1" or "a,b"; each item read as a YAML scalar.
        value = [_scalar(v.strip()) for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {_show(value)}")
    return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]


def _coerce_dict(item: Any, value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
    return {str(k): _coerce(item, v, _join(where, str(k))) for k, v in value.items()}


def _coerce_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
    return value


def _coerce_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {_show(value)}")
    return float(value)


def _coerce_str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a string, got {_show(value)}")
    return str(value)


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _coerce_bool,
    int: _coerce_int,
    float: _coerce_float,
    str: _coerce_str,
}


def _check(s: Settings) -> None:
    _check_server(s.server)
    _check_redis(s.redis)
    if s.redis.max_connections < 8:
        raise ConfigError(
            f"redis.max_connections: must be at least 8, got {s.redis.max_connections}"
        )
    if s.auth.rate_per_second < 0:
        raise ConfigError("auth.rate_per_second: must be 0 (no limit) or more")
    _positive("auth.burst", s.auth.burst)
    _positive("worker.concurrency", s.worker.concurrency)
    _positive("worker.lease_seconds", s.worker.lease_seconds)
    _positive("worker.idle_check_seconds", s.worker.idle_check_seconds)
    _positive("worker.blocked_loop_seconds", s.worker.blocked_loop_seconds)
    _check_webhooks(s.webhooks)
    _check_clients(s.auth.clients)
    for name, op in s.operations.items():
        _check_operation(name, op)


def _check_redis(redis: RedisSettings) -> None:
    urls = [u.strip() for u in redis.url.split(",")]
    if redis.cluster and not redis.url:
        raise ConfigError(
            "redis.cluster: needs redis.url naming at least one cluster node "
            "(the embedded server is one node)"
        )
    if len(urls) > 1 and not redis.cluster:
        raise ConfigError("redis.url: several URLs are only allowed with redis.cluster: true")
    if redis.cluster and not all(u.startswith(("redis://", "rediss://")) for u in urls):
        raise ConfigError("redis.url: cluster nodes are redis:// or rediss:// URLs")
    if redis.wait_replicas < 0:
        raise ConfigError(f"redis.wait_replicas: must be 0 or more, got {redis.wait_replicas}")
    if not 0 < redis.wait_timeout_seconds <= 10:
        raise ConfigError(
            "redis.wait_timeout_seconds: must be greater than 0 and at most 10, "
            f"got {redis.wait_timeout_seconds}"
        )


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value}")


def _check_server(server: ServerSettings) -> None:
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port: must be 0..65535, got {server.port}")
    if server.public_url and not server.public_url.startswith(("http://", "https://")):
        raise ConfigError("server.public_url: must start with http:// or https://")
    if "null" in server.cors_origins:
        raise ConfigError('server.cors_origins: "null" cannot be allowed (any page can be null)')
    _positive("server.max_body_bytes", server.max_body_bytes)
    _positive("server.max_batch_bytes", server.max_batch_bytes)
    _positive("server.max_streams", server.max_streams)
    _positive("server.max_streams_per_client", server.max_streams_per_client)
    _positive("server.stream_events_seconds", server.stream_events_seconds)
    _positive("server.max_wait_seconds", server.max_wait_seconds)
    _positive("server.max_sync_waits_per_client", server.max_sync_waits_per_client)
    if server.sync_wait_seconds < 0:
        raise ConfigError("server.sync_wait_seconds: must be 0 or more")
    if server.processes < 0:
        raise ConfigError(
            f"server.processes: must be 0 (one per CPU core) or more, got {server.processes}"
        )


def _check_clients(clients: list[ClientSettings]) -> None:
    names: set[str] = set()
    for i, client in enumerate(clients):
        _check_client(f"auth.clients[{i}]", client)
        if client.name in names:
            raise ConfigError(f"auth.clients[{i}].name: duplicate client {client.name!r}")
        names.add(client.name)
    if len({c.key_digest() for c in clients}) != len(clients):
        raise ConfigError("auth.clients: two clients share a key")


def _check_client(where: str, client: ClientSettings) -> None:
    if not client.name:
        raise ConfigError(f"{where}: name must not be empty")
    if not client.name.isprintable() or any(c.isspace() for c in client.name):
        # Client names travel space- and newline-delimited in events and hand-offs.
        raise ConfigError(f"{where}.name: no spaces or control characters ({client.name!r})")
    if client.key and client.key_sha256:
        raise ConfigError(f"{where}: set key or key_sha256, not both")
    if client.key_sha256:
        if not _SHA256_HEX.fullmatch(client.key_sha256):
            raise ConfigError(f"{where}.key_sha256: expected 64 hex digits (a SHA-256)")
        return
    if not client.key:
        raise ConfigError(f"{where}.key: required (or key_sha256, the hex SHA-256 of the key)")
    if len(client.key) < 16:
        raise ConfigError(f"{where}.key: must be at least 16 characters")


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _check_webhooks(webhooks: WebhookSettings) -> None:
    _positive("webhooks.timeout_seconds", webhooks.timeout_seconds)
    _positive("webhooks.max_endpoints_per_client", webhooks.max_endpoints_per_client)
    _positive("webhooks.delivery_retention_seconds", webhooks.delivery_retention_seconds)
    if not webhooks.retry_schedule:
        raise ConfigError("webhooks.retry_schedule: needs at least one delay")
    for i, delay in enumerate(webhooks.retry_schedule):
        if delay < 0:
            raise ConfigError(f"webhooks.retry_schedule[{i}]: must be 0 or more")
    if webhooks.partitions is not None and not 1 <= webhooks.partitions <= 256:
        raise ConfigError("webhooks.partitions: must be 1 to 256")
    if not 0 <= webhooks.jitter < 1:
        raise ConfigError("webhooks.jitter: must be in [0, 1)")
    for i, net in enumerate(webhooks.allow_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"webhooks.allow_networks[{i}]: {exc}") from exc


def _check_operation(name: str, op: OperationSettings) -> None:
    where = f"operations.{name}"
    if not _OPERATION_NAME.fullmatch(name) or name in RESERVED:
        raise ConfigError(
            f"{where}: name must be 1-64 of [a-z0-9-], starting with a letter or digit, and not"
            f" one of {', '.join(RESERVED)}"
        )
    if ":" not in op.handler:
        raise ConfigError(f"{where}.handler: expected 'module:function', got {op.handler!r}")
    _positive(f"{where}.timeout", op.timeout)
    _positive(f"{where}.attempts", op.attempts)
    _positive(f"{where}.result_ttl", op.result_ttl)
    _positive(f"{where}.max_queue_depth", op.max_queue_depth)
    _positive(f"{where}.max_result_bytes", op.max_result_bytes)
    if op.retry_backoff < 0:
        raise ConfigError(f"{where}.retry_backoff: must be 0 or more")
    if op.max_lost < 0:
        raise ConfigError(f"{where}.max_lost: must be 0 or more")
    if op.queue_timeout is not None:
        _positive(f"{where}.queue_timeout", op.queue_timeout)
    if not 1 <= op.shards <= MAX_SHARDS:
        raise ConfigError(f"{where}.shards: must be 1 to {MAX_SHARDS}")


# One id character names a request's shard (service.queue.ids, keys.MAX_SHARDS).
MAX_SHARDS = 32
# Names that paths under /v1/ or Redis hash tags use already: an operation's keys are tagged
# {name}, and the webhook keys {wh} (webhooks/keys.py).
RESERVED = ("queue", "operations", "webhooks", "wh")
# ASCII only: names become URL paths, Redis keys, environment variable names and metric labels.
_OPERATION_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
