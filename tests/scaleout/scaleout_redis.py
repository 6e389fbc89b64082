"""Real Redis for the scale-out tests: one server per test (tests/aio's), a three-primary cluster per session.

The standalone server is :class:`test_redis_hub.RedisServer`. The cluster is
three ``redis-server --cluster-enabled yes`` processes on loopback ports,
joined by ``redis-cli --cluster create ... --cluster-replicas 0``; without
``redis-cli`` (Debian's redis-tools, which comes with redis-server) the
fixture fails and says what to install. Nothing is skipped.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aio"))
from test_redis_hub import HOST, SRC, RedisServer, free_port

__all__ = ["HOST", "SRC", "RedisCluster", "RedisServer", "free_port"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _cluster_ports(n: int) -> list[int]:
    """``n`` ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randint(20000, 54000)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


def _ask(port: int, command: bytes) -> bytes:
    """One inline command's reply (a status line or a bulk string), over a fresh connection."""
    with socket.create_connection((HOST, port), timeout=1) as s:
        s.sendall(command)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        if data.startswith(b"$"):
            head, _, rest = data.partition(b"\r\n")
            size = int(head[1:])
            while size >= 0 and len(rest) < size + 2:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return rest[: max(size, 0)]
        return data


class RedisCluster:
    """Three Redis Cluster primaries on loopback, no replicas, no persistence."""

    def __init__(self, tmp: Path, size: int = 3) -> None:
        self.binary = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)", pytrace=False)
        if self.cli is None:
            pytest.fail(
                "redis-cli is not installed: apt-get install redis-tools (it comes with redis-server); "
                "the Redis Cluster tests need it to create the cluster",
                pytrace=False,
            )
        self.tmp = tmp
        self.ports = _cluster_ports(size)
        self.url = f"redis://{HOST}:{self.ports[0]}/0"
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, port: int) -> None:
        assert self.binary is not None
        self.procs[port] = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "3000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if _ask(port, b"PING\r\n").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def start(self) -> None:
        for port in self.ports:
            self._spawn(port)
        assert self.cli is not None
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every node says the cluster is ok and knows every other node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                infos = [_ask(port, b"CLUSTER INFO\r\n") for port in self.ports]
            except OSError:
                infos = []
            if infos and all(
                b"cluster_state:ok" in info and b"cluster_known_nodes:3" in info for info in infos
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not come up")

    def restart(self, port: int) -> None:
        """Stop the node at ``port`` and start it again: same slots, no data."""
        proc = self.procs.pop(port)
        proc.terminate()
        proc.wait(5)
        self._spawn(port)
        self.wait_ok()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(5)
        self.procs.clear()
