"""Process groups: ``acceptd serve|api`` with ``server.processes`` > 1, run as real processes.

Which API process served a request is read from the operating system (psutil: which member
holds the server side of the client's TCP connection), so the service needs no test-only
header. Every wait is bounded polling of real state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from service.__main__ import main
from service.runtime.config import ConfigError, load_settings
from service.runtime.embedded import free_port
from service.runtime.supervisor import member_names, member_role, resolve_processes
from tests.support.processes import CONFIG, Processes, RoleProcess, wait_until

GROUP_TIMEOUT = 30.0  # a loaded 2-core machine starts four Python processes in seconds


def test_processes_zero_means_one_per_cpu_core() -> None:
    assert resolve_processes(0) == len(os.sched_getaffinity(0))
    assert resolve_processes(3) == 3
    assert member_names("serve", 2) == ["api-1", "api-2", "worker-1", "dispatcher-1"]
    assert member_names("api", 2) == ["api-1", "api-2"]
    assert member_role("dispatcher-1") == "dispatcher"


def test_processes_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match=r"server\.processes"):
        load_settings(CONFIG, {"ACCEPTD_SERVER__PROCESSES": "-1"})


def test_processes_flag_is_for_serve_and_api_only() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--config", str(CONFIG), "--processes", "2"])
    assert exc.value.code == 2


def members(supervisor: RoleProcess) -> dict[str, psutil.Process]:
    """The supervisor's members by name (``api-1``…), from their ``--member`` argument."""
    found: dict[str, psutil.Process] = {}
    for child in psutil.Process(supervisor.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            cmdline = child.cmdline()
            if "--member" in cmdline:
                found[cmdline[cmdline.index("--member") + 1]] = child
    return found


def listening(proc: psutil.Process, port: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for c in proc.net_connections("tcp")
        )
    return False


async def wait_group(
    supervisor: RoleProcess, names: list[str], port: int
) -> dict[str, psutil.Process]:
    """Wait until every member runs and every API member listens on ``port``."""

    async def ready() -> dict[str, psutil.Process] | None:
        supervisor.check_alive()
        found = members(supervisor)
        if sorted(found) != sorted(names):
            return None
        apis = [p for name, p in found.items() if name.startswith("api-")]
        return found if all(listening(p, port) for p in apis) else None

    return await wait_until(ready, GROUP_TIMEOUT, interval=0.1, message=f"members {names}")


def owner(apis: list[psutil.Process], port: int, client_port: int) -> int | None:
    """The pid of the API process that accepted the connection from ``client_port``."""
    for proc in apis:
        with contextlib.suppress(psutil.NoSuchProcess):
            for c in proc.net_connections("tcp"):
                if c.laddr.port == port and c.raddr and c.raddr.port == client_port:
                    return int(proc.pid)
    return None


async def http(
    apis: list[psutil.Process], port: int, method: str, path: str, body: bytes = b""
) -> tuple[int, int, str]:
    """One request on a fresh connection: (pid that served it, status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        client_port = writer.get_extra_info("sockname")[1]

        async def accepted() -> int | None:
            return owner(apis, port, client_port)

        pid = await wait_until(accepted, 10, message="the connection's accepting process")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nPrefer: respond-async\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(raw.split(b" ", 2)[1])
    return pid, status, raw.partition(b"\r\n\r\n")[2].decode()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def port_free(port: int) -> bool:
    """Whether a plain listener (no SO_REUSEPORT) can take the port.

    SO_REUSEADDR, as every server sets it: the test's closed connections linger in TIME_WAIT.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gone(pids: list[int]) -> bool:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
    return True


SUBMITTED = 'acceptd_requests_submitted_total{operation="echo"}'
FINISHED = 'acceptd_requests_finished_total{operation="echo",outcome="succeeded"}'


async def test_serve_group_shares_the_port_adds_up_metrics_restarts_and_stops(
    procs: Processes, redis_url: str
) -> None:
    port = free_port()
    env = {
        "ACCEPTD_REDIS__URL": redis_url,
        "ACCEPTD_SERVER__PORT": str(port),
        "ACCEPTD_SERVER__PROCESSES": "2",
        "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
        "ACCEPTD_WORKER__IDLE_CHECK_SECONDS": "0.2",
    }
    supervisor = procs.start("serve", env)
    group = await wait_group(supervisor, member_names("serve", 2), port)
    apis = [group["api-1"], group["api-2"]]

    # The kernel spreads connections over both API processes; every submit is accepted.
    served: dict[int, int] = {}
    sent = 0
    while len(served) < 2 or sent < 10:
        assert sent < 200, f"all connections went to one process: {served}"
        pid, status, body = await http(apis, port, "POST", "/v1/echo", b'{"n": 1}')
        assert status == 202, body
        served[pid] = served.get(pid, 0) + 1
        sent += 1
    assert set(served) == {p.pid for p in apis}

    # Any process's /metrics shows the group's counts (flushed within a second).
    async def counted() -> bool:
        _, status, text = await http(apis, port, "GET", "/metrics")
        return status == 200 and metric(text, SUBMITTED) == sent and metric(text, FINISHED) == sent

    await wait_until(counted, 15, interval=0.2, message=f"{sent} submitted and finished")
    scraped: set[int] = set()
    for _ in range(40):
        pid, status, text = await http(apis, port, "GET", "/metrics")
        assert status == 200
        assert metric(text, SUBMITTED) == sent, text
        assert metric(text, FINISHED) == sent, text
        scraped.add(pid)
        if len(scraped) == 2 and _ >= 3:
            break
    assert scraped == {p.pid for p in apis}
    for path in ("/healthz", "/readyz"):
        _, status, body = await http(apis, port, "GET", path)
        assert status == 200, body

    # A member that dies is restarted.
    os.kill(apis[0].pid, signal.SIGKILL)

    async def replaced() -> bool:
        found = members(supervisor)
        new = found.get("api-1")
        return new is not None and new.pid != apis[0].pid and listening(new, port)

    await wait_until(replaced, GROUP_TIMEOUT, interval=0.1, message="api-1 restarted")
    assert "api-1 (pid" in supervisor.output() and "restarting in" in supervisor.output()

    # SIGTERM: every member stops, the supervisor exits 0, the port is free.
    pids = [p.pid for p in members(supervisor).values()]
    assert await supervisor.terminate(timeout=GROUP_TIMEOUT) == 0
    assert gone(pids), supervisor.output()
    assert port_free(port)


@contextlib.contextmanager
def two_cpus() -> Iterator[int]:
    """Run (and start children) on two CPUs: ``processes: 0`` then means 2 on any machine."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:2])
    try:
        yield 2
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
async def test_api_group_one_per_cpu_embedded_once_and_dies_with_its_supervisor(
    procs: Processes, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "ACCEPTD_REDIS__DATA_DIR": str(tmp_path / "data"),
        "ACCEPTD_SERVER__PORT": str(port),
        "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
        # A folder of the test's: a SIGKILLed supervisor cannot remove a temporary one.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"stale")  # a past run's: emptied
    with two_cpus() as cpus:
        supervisor = procs.start("api", env, args=["--processes", "0"])
    group = await wait_group(supervisor, member_names("api", cpus), port)
    servers = [
        c
        for c in psutil.Process(supervisor.pid).children()
        if "valkey" in c.name() or "redis" in c.name()
    ]
    assert len(servers) == 1, servers  # the embedded server started once, for the group
    assert not (tmp_path / "metrics" / "counter_1.db").exists()
    _, status, body = await http(list(group.values()), port, "GET", "/readyz")
    assert status == 200, body

    supervisor.kill()  # SIGKILL: no chance to stop anything itself
    pids = [p.pid for p in group.values()] + [servers[0].pid]

    async def all_gone() -> bool:
        return gone(pids)

    await wait_until(all_gone, GROUP_TIMEOUT, interval=0.1, message="members to exit")
    assert port_free(port)
