"""Settings: defaults, the shipped config.yaml, environment overrides, errors naming the key."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from service.app import check_open_mode, create_app
from service.registry import build_operations
from service.runtime.config import (
    ClientSettings,
    ConfigError,
    OperationSettings,
    Settings,
    load_settings,
    settings_from_dict,
)
from service.state import Roles
from tests.support.processes import CONFIG, ROOT, acceptd_command, clean_env


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    """A config file with ``text``."""
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """The ConfigError message of loading ``text``."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ or {})
    return str(info.value)


# --- defaults and the shipped file ----------------------------------------------------------


def test_defaults_without_a_file() -> None:
    s = load_settings(None, {})
    assert s == Settings()
    assert s.server.host == "127.0.0.1"
    assert s.server.port == 8080
    assert s.redis.url == ""
    assert s.redis.appendfsync == "everysec"
    assert s.auth.clients == []
    assert s.worker.concurrency == 32
    assert s.operations == {}
    assert s.webhooks.retry_schedule == [5, 300, 1800, 7200, 18000, 36000, 36000]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), {}) == Settings()


def test_process_environment_is_read_when_environ_is_omitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCEPTD_SERVER__PORT", "9099")
    assert load_settings(None).server.port == 9099


def test_shipped_config_loads_and_binds() -> None:
    s = load_settings(CONFIG, {})
    assert s.server.host == "127.0.0.1"
    assert s.auth.clients == []
    assert set(s.operations) == {"echo", "sleep", "bank-account-validations", "image-thumbnails"}
    assert s.operations["image-thumbnails"].max_queue_depth == 1000
    assert s.operations["sleep"].attempts == 1
    ops = build_operations(s)
    assert set(ops) == set(s.operations)
    assert ops["echo"].run_in == "loop"
    assert ops["sleep"].validate({"seconds": 1}) == []
    assert ops["sleep"].validate({"seconds": "x"})
    check_open_mode(s)


# --- environment overrides ---------------------------------------------------------------


def test_env_overrides_scalars() -> None:
    s = load_settings(
        CONFIG,
        {
            "ACCEPTD_SERVER__PORT": "8081",
            "ACCEPTD_REDIS__URL": "redis://cache.internal:6380/2",
            "ACCEPTD_WORKER__LEASE_SECONDS": "2.5",
            "ACCEPTD_SERVER__PUBLIC_URL": "https://api.example.com",
            "UNRELATED": "1",
            "ACCEPTD_NO_SEPARATOR": "ignored",
        },
    )
    assert s.server.port == 8081
    assert s.redis.url == "redis://cache.internal:6380/2"
    assert s.worker.lease_seconds == 2.5
    assert s.server.public_url == "https://api.example.com"


def test_delivery_retention_defaults_to_a_week() -> None:
    assert load_settings(CONFIG, {}).webhooks.delivery_retention_seconds == 7 * 86_400
    s = load_settings(CONFIG, {"ACCEPTD_WEBHOOKS__DELIVERY_RETENTION_SECONDS": "60"})
    assert s.webhooks.delivery_retention_seconds == 60


def test_env_empty_string_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "redis:\n  url: redis://127.0.0.1:6379/0\n")
    assert load_settings(path, {}).redis.url == "redis://127.0.0.1:6379/0"
    assert load_settings(path, {"ACCEPTD_REDIS__URL": ""}).redis.url == ""


def test_env_operation_names_map_underscores_to_dashes() -> None:
    s = load_settings(CONFIG, {"ACCEPTD_OPERATIONS__IMAGE_THUMBNAILS__TIMEOUT": "5"})
    assert s.operations["image-thumbnails"].timeout == 5.0
    assert "image_thumbnails" not in s.operations
    assert s.operations["image-thumbnails"].handler == "service.operations.thumbnails:thumbnail"
    build_operations(s)


def test_env_can_add_an_operation() -> None:
    s = load_settings(
        None, {"ACCEPTD_OPERATIONS__MY_ECHO__HANDLER": "service.operations.echo:echo"}
    )
    assert s.operations == {"my-echo": OperationSettings(handler="service.operations.echo:echo")}


def test_env_comma_list() -> None:
    s = load_settings(CONFIG, {"ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "127.0.0.0/8,::1/128"})
    assert s.webhooks.allow_networks == ["127.0.0.0/8", "::1/128"]
    s = load_settings(CONFIG, {"ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "[10.0.0.0/8]"})
    assert s.webhooks.allow_networks == ["10.0.0.0/8"]


def test_env_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.port: expected an integer"):
        load_settings(CONFIG, {"ACCEPTD_SERVER__PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        load_settings(CONFIG, {"ACCEPTD_SERVER__PROT": "8081"})


def test_appendfsync_no_is_accepted(tmp_path: Path) -> None:
    assert load_settings(None, {"ACCEPTD_REDIS__APPENDFSYNC": "no"}).redis.appendfsync == "no"
    path = write(tmp_path, "redis:\n  appendfsync: no\n")
    assert load_settings(path, {}).redis.appendfsync == "no"


# --- errors name the bad key -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  prot: 1\n", "server.prot: unknown key"),
        ("serve:\n  port: 1\n", "serve: unknown key"),
        ("server:\n  port: '8080'\n", "server.port: expected an integer"),
        ("server:\n  port: true\n", "server.port: expected an integer"),
        ("server:\n  port: 70000\n", "server.port: must be 0..65535"),
        ("server: 3\n", "server: expected a mapping"),
        ("server:\n  public_url: example.com\n", "server.public_url: must start with"),
        ("server:\n  max_body_bytes: 0\n", "server.max_body_bytes: must be greater than 0"),
        ("worker:\n  concurrency: 0\n", "worker.concurrency: must be greater than 0"),
        ("worker:\n  lease_seconds: -1\n", "worker.lease_seconds: must be greater than 0"),
        ("worker:\n  lease_seconds: soon\n", "worker.lease_seconds: expected a number"),
        ("redis:\n  appendfsync: sometimes\n", "redis.appendfsync: expected one of"),
        ("redis:\n  max_connections: 4\n", "redis.max_connections: must be at least 8"),
        (
            "webhooks:\n  max_endpoints_per_client: 0\n",
            "webhooks.max_endpoints_per_client: must be greater than 0",
        ),
        (
            "webhooks:\n  delivery_retention_seconds: 0\n",
            "webhooks.delivery_retention_seconds: must be greater than 0",
        ),
        ("webhooks:\n  jitter: 1.5\n", "webhooks.jitter: must be in [0, 1)"),
        ("webhooks:\n  retry_schedule: []\n", "webhooks.retry_schedule: needs at least one"),
        ("webhooks:\n  retry_schedule: [5, -1]\n", "webhooks.retry_schedule[1]"),
        ("webhooks:\n  allow_networks: [10.0.0.0/8, nonsense]\n", "webhooks.allow_networks[1]"),
        ("webhooks:\n  allow_networks: 5\n", "webhooks.allow_networks: expected a list"),
        ("auth:\n  clients: [{name: a}]\n", "auth.clients[0].key: required"),
        ("auth:\n  clients: [{name: a, key: short}]\n", "auth.clients[0].key: must be at least"),
        (
            "auth:\n  clients: [{name: 'team a', key: aaaaaaaaaaaaaaaaaaaa}]\n",
            "auth.clients[0].name: no spaces",
        ),
        (
            "auth:\n  clients:\n    - {name: a, key: aaaaaaaaaaaaaaaaaaaa}\n"
            "    - {name: a, key: bbbbbbbbbbbbbbbbbbbb}\n",
            "auth.clients[1].name: duplicate client 'a'",
        ),
        (
            "auth:\n  clients:\n    - {name: a, key: aaaaaaaaaaaaaaaaaaaa}\n"
            "    - {name: b, key: aaaaaaaaaaaaaaaaaaaa}\n",
            "auth.clients: two clients share a key",
        ),
        ("operations:\n  x: {}\n", "operations.x.handler: required"),
        ("operations:\n  x:\n    handler: nocolon\n", "operations.x.handler: expected"),
        ("operations:\n  x:\n    handler: a:b\n    attempts: 0\n", "operations.x.attempts"),
        ("operations:\n  x:\n    handler: a:b\n    run_in: gpu\n", "operations.x.run_in"),
        ("operations:\n  x:\n    handler: a:b\n    max_lost: -1\n", "operations.x.max_lost"),
        ("operations:\n  x:\n    handler: a:b\n    queue_timeout: 0\n", "x.queue_timeout"),
        ("operations:\n  queue:\n    handler: a:b\n", "operations.queue: name must be"),
        ("operations:\n  webhooks:\n    handler: a:b\n", "operations.webhooks: name must be"),
        ("operations:\n  'a b':\n    handler: a:b\n", "operations.a b: name must be"),
        ("operations:\n  wh:\n    handler: a:b\n", "operations.wh: name must be"),
        ("operations:\n  Echo:\n    handler: a:b\n", "operations.Echo: name must be"),
        ("operations:\n  my_op:\n    handler: a:b\n", "operations.my_op: name must be"),
        ("operations:\n  é:\n    handler: a:b\n", "operations.é: name must be"),
        ("operations:\n  '-x':\n    handler: a:b\n", "operations.-x: name must be"),
        ("operations:\n  " + "a" * 65 + ":\n    handler: a:b\n", "name must be"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_invalid_yaml(tmp_path: Path) -> None:
    message = config_error(tmp_path, "server:\n  port: [1\n")
    assert "invalid YAML" in message
    assert "config.yaml" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "the top level must be a mapping" in config_error(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", {})


def test_env_with_unparseable_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ACCEPTD_SERVER__PORT: cannot parse value"):
        load_settings(None, {"ACCEPTD_SERVER__PORT": "[1"})


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("no_such_module_xyz:fn", "operations.x.handler: cannot import 'no_such_module_xyz'"),
        ("service.operations.echo:nothing", "operations.x.handler: 'service.operations.echo'"),
        ("service.operations.echo:ANY_JSON", "has no callable 'ANY_JSON'"),
    ],
)
def test_unbindable_handler_names_the_key(handler: str, expected: str) -> None:
    settings = settings_from_dict({"operations": {"x": {"handler": handler}}})
    with pytest.raises(ConfigError) as info:
        build_operations(settings)
    assert expected in str(info.value)


# --- open mode ---------------------------------------------------------------------------


def open_settings(host: str, clients: list[ClientSettings] | None = None) -> Settings:
    """Settings listening on ``host`` with the given clients."""
    return settings_from_dict(
        {
            "server": {"host": host},
            "auth": {"clients": [{"name": c.name, "key": c.key} for c in clients or []]},
        }
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_open_mode_refuses_non_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.host"):
        check_open_mode(open_settings(host))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_open_mode_allows_loopback(host: str) -> None:
    check_open_mode(open_settings(host))


def test_open_mode_allows_any_host_with_clients() -> None:
    check_open_mode(open_settings("0.0.0.0", [ClientSettings("alice", "a" * 32)]))


def test_create_app_applies_open_mode_to_the_api_only() -> None:
    settings = open_settings("0.0.0.0")
    with pytest.raises(ConfigError, match=r"server\.host"):
        create_app(settings)
    create_app(settings, Roles(api=False, worker=True))  # a worker listens on nothing


# --- the command line --------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``acceptd`` to completion (configuration errors exit before anything starts)."""
    return subprocess.run(
        args,
        cwd=ROOT,
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = write(tmp_path, "server:\n  prot: 8081\n", "bad.yaml")
    done = run_cli(acceptd_command("serve", bad))
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    assert "server.prot: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_env_errors_and_open_mode_exit_2() -> None:
    done = run_cli(acceptd_command("worker"), {"ACCEPTD_WORKER__CONCURRENCY": "0"})
    assert done.returncode == 2, done.stderr
    assert "worker.concurrency: must be greater than 0" in done.stderr

    done = run_cli(acceptd_command("serve"), {"ACCEPTD_SERVER__HOST": "0.0.0.0"})
    assert done.returncode == 2, done.stderr
    assert "configuration error: server.host" in done.stderr

    done = run_cli(
        acceptd_command("api"),
        {"ACCEPTD_OPERATIONS__ECHO__HANDLER": "service.operations.echo:nope"},
    )
    assert done.returncode == 2, done.stderr
    assert "operations.echo.handler" in done.stderr


# --- keys at rest ------------------------------------------------------------------------

DIGEST_A = hashlib.sha256(b"aaaaaaaaaaaaaaaaaaaa").hexdigest()


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        ([{"name": "a", "key_sha256": "abc"}], "auth.clients[0].key_sha256: expected 64 hex"),
        ([{"name": "a", "key_sha256": "g" * 64}], "auth.clients[0].key_sha256: expected 64 hex"),
        (
            [{"name": "a", "key": "aaaaaaaaaaaaaaaaaaaa", "key_sha256": DIGEST_A}],
            "auth.clients[0]: set key or key_sha256, not both",
        ),
        (
            [{"name": "a", "key": "aaaaaaaaaaaaaaaaaaaa"}, {"name": "b", "key_sha256": DIGEST_A}],
            "auth.clients: two clients share a key",
        ),
    ],
)
def test_key_sha256_is_checked(clients: list[dict[str, str]], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict({"auth": {"clients": clients}})
    assert expected in str(info.value)


def test_key_sha256_matches_the_plain_key_digest() -> None:
    s = settings_from_dict(
        {"auth": {"clients": [{"name": "a", "key_sha256": DIGEST_A.upper(), "burst": 7}]}}
    )
    assert s.auth.clients[0].key_digest() == hashlib.sha256(b"aaaaaaaaaaaaaaaaaaaa").digest()
    assert s.auth.limit_for("a") == (0.0, 7) and s.auth.limit_for("nobody") == (0.0, 100)


def test_the_webhook_hash_tag_is_a_reserved_operation_name() -> None:
    from service.runtime.config import RESERVED
    from webhooks.keys import TAG

    assert TAG in RESERVED
