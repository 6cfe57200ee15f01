"""SSRF protection: refused targets at registration and at connect time."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.webhooks import Receiver
from webhooks import TargetRefused, check_url
from webhooks.ssrf import SafeResolver, check_url_static, refusal

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1:8080/hook",
        "http://172.16.5.4/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://192.0.2.10/",
        "http://[2001:db8::1]/",
        "http://[2002:a00:1::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2001::1]/",
        "http://localhost:8080/",
    ],
)
async def test_internal_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check_url(url, [])


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "https://user:pw@example.com/"],
)
async def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check_url(url, [])


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://localhost/"],
)
async def test_allow_networks_admit_loopback(url: str) -> None:
    await check_url(url, LOOPBACK)


async def test_allow_networks_admit_only_what_they_name() -> None:
    await check_url("http://10.1.2.3/", ["10.1.0.0/16"])
    with pytest.raises(TargetRefused):
        await check_url("http://10.2.0.1/", ["10.1.0.0/16"])


def test_public_addresses_pass() -> None:
    assert refusal("93.184.216.34") is None
    assert refusal("2606:4700:4700::1111") is None
    assert refusal("64:ff9b::808:808") is None  # NAT64 of a public address
    check_url_static("https://93.184.216.34/hook")


def test_refusals_say_why() -> None:
    assert refusal("169.254.169.254") == "169.254.169.254 is link-local"
    assert "loopback" in (refusal("::ffff:127.0.0.1") or "")


async def test_resolver_refuses_at_connect_time() -> None:
    async with Receiver() as receiver:
        url = f"http://localhost:{receiver.port}/hook"
        resolver = SafeResolver([])
        connector = aiohttp.TCPConnector(resolver=resolver)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(TargetRefused):
                async with session.post(url, data=b"{}"):
                    pass
        await resolver.close()
        assert receiver.received == []

        resolver = SafeResolver(LOOPBACK)
        connector = aiohttp.TCPConnector(resolver=resolver)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(url, data=b"{}") as resp,
        ):
            assert resp.status == 200
        await resolver.close()
        assert len(receiver.received) == 1


async def test_resolver_drops_refused_addresses() -> None:
    resolver = SafeResolver(["127.0.0.0/8"])
    results = await resolver.resolve("localhost", 80)
    assert results
    assert all(r["host"].startswith("127.") for r in results)
    await resolver.close()
