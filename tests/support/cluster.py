"""A local Redis/Valkey Cluster for tests: 3 masters (and replicas when asked) on loopback ports.

Formed from the same server binary the embedded default uses
(:func:`service.runtime.embedded.find_server_binary`), by commands sent from Python
(``CLUSTER ADDSLOTSRANGE`` on each master, ``CLUSTER MEET``, ``CLUSTER REPLICATE``): nothing is
installed by hand, no ``valkey-cli`` is needed. Every wait polls real state with a deadline.
"""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from service.runtime.embedded import find_server_binary

SLOTS = 16384
# Short enough that a killed master's replica takes over in a few seconds; long enough that a
# loaded 2-core machine does not see false failures.
NODE_TIMEOUT_MS = 2000

# Parametrizes a test over both backends: ``@both`` (the ``redis_backend`` fixture's values).
both = pytest.mark.parametrize("redis_backend", ["node", "cluster"])


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of Linux's ephemeral range (outgoing connections and port-0 binds)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too, both below the ephemeral range.

    The node binds them only after this check: a port in the ephemeral range could be taken in
    between by any outgoing connection (or another test's port-0 server), and the node would
    exit without ever answering.
    """
    high = min(_ephemeral_low(), 65536) - 10000 - 1
    while True:
        port = random.randint(10000, high)
        # A node just started may not have bound its port yet: never hand a port out twice.
        if port in _handed_out:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        _handed_out.add(port)
        return port


def cmd(node: Node, *args: Any) -> Any:
    """One command to one node."""
    return node.client.execute_command(*args)  # type: ignore[no-untyped-call]


class Node:
    """One cluster node: a server process with its own folder."""

    def __init__(self, binary: str, base: Path, port: int) -> None:
        self.port = port
        self.dir = base / str(port)
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "server.log",
            # A replica's master may be gone: the replica still answers.
            "--cluster-require-full-coverage", "no",
            # A replica syncs at once (the default waits 5 s for more replicas to share the
            # transfer): one that never synced refuses to fail over ("disconnected from primary
            # for longer than allowed").
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=port, host="127.0.0.1", socket_timeout=5)
        self.id = ""

    @property
    def url(self) -> str:
        """A redis-py URL for this node."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        proc, self.proc = self.proc, None
        self.client.close()
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"local cluster: timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class LocalCluster:
    """``masters`` masters sharing the slots evenly, each with ``replicas`` replicas."""

    def __init__(self, base: Path, masters: int = 3, replicas: int = 0) -> None:
        binary = find_server_binary()
        self.masters = [Node(binary, base, cluster_port()) for _ in range(masters)]
        self.replicas = [Node(binary, base, cluster_port()) for _ in range(masters * replicas)]
        self.replicas_per_master = replicas

    @property
    def nodes(self) -> list[Node]:
        """Every node, masters first."""
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        """The masters' URLs, comma-separated (``redis.url`` with ``redis.cluster: true``)."""
        return ",".join(n.url for n in self.masters)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and form the cluster; returns once every node sees it ``ok``."""
        try:
            self._form(timeout)
        except BaseException:
            self.stop()
            raise

    def _form(self, timeout: float) -> None:
        for node in self.nodes:
            _wait(node.client.ping, timeout, f"node {node.port} to answer")
            node.id = cmd(node, "CLUSTER", "MYID").decode()
        per = SLOTS // len(self.masters)
        for i, node in enumerate(self.masters):
            last = SLOTS - 1 if i == len(self.masters) - 1 else (i + 1) * per - 1
            cmd(node, "CLUSTER", "ADDSLOTSRANGE", i * per, last)
        first = self.masters[0]
        for node in self.nodes[1:]:
            cmd(node, "CLUSTER", "MEET", "127.0.0.1", first.port)
        for i, replica in enumerate(self.replicas):
            master = self.masters[i // self.replicas_per_master]
            # Retried until gossip has told the replica about its master.
            _wait(
                functools.partial(cmd, replica, "CLUSTER", "REPLICATE", master.id),
                timeout,
                f"replica {replica.port} to follow {master.port}",
            )
        for node in self.nodes:
            _wait(
                functools.partial(self._ok, node),
                timeout,
                f"node {node.port} to see the cluster ok",
            )
        for replica in self.replicas:
            _wait(
                functools.partial(_synced, replica),
                timeout,
                f"replica {replica.port} to finish its first sync",
            )

    def _ok(self, node: Node) -> bool:
        info = cmd(node, "CLUSTER", "INFO").decode()
        fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
        return (
            fields.get("cluster_state") == "ok"
            and int(fields.get("cluster_known_nodes", 0)) == len(self.nodes)
            and int(fields.get("cluster_slots_ok", 0)) == SLOTS
        )

    def flush(self) -> None:
        """Empty every master's keyspace (replicas follow)."""
        for node in self.masters:
            if node.alive:
                node.client.flushall()

    def master_of(self, key: str) -> Node:
        """The master that owns ``key``'s slot now (asked of a live master)."""
        live = next(n for n in self.nodes if n.alive)
        slot = int(cmd(live, "CLUSTER", "KEYSLOT", key))
        for entry in cmd(live, "CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                port = int(entry[2][1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(slot)

    def wait_ok(self, nodes: Sequence[Node] | None = None, timeout: float = 20.0) -> None:
        """Wait until every live node (or ``nodes``) reports the cluster ``ok``."""
        for node in nodes or [n for n in self.nodes if n.alive]:
            _wait(functools.partial(_state_ok, node), timeout, f"node {node.port} to see it ok")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def _synced(node: Node) -> bool:
    """Whether a replica's link to its master is up (its first sync done)."""
    return node.client.info("replication").get("master_link_status") == "up"


def _state_ok(node: Node) -> bool:
    return "cluster_state:ok" in cmd(node, "CLUSTER", "INFO").decode()


def is_cluster_url(url: str) -> bool:
    """Whether a test's ``redis_url`` names the cluster (its masters, comma-separated)."""
    return "," in url


def redis_section(url: str) -> dict[str, Any]:
    """The ``redis`` settings for a test's ``redis_url``."""
    return {"url": url, "cluster": is_cluster_url(url)}


def redis_env(url: str) -> dict[str, str]:
    """The ``ACCEPTD_REDIS__*`` environment for a test's ``redis_url``."""
    return {
        "ACCEPTD_REDIS__URL": url,
        "ACCEPTD_REDIS__CLUSTER": "true" if is_cluster_url(url) else "false",
    }
