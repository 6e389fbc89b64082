"""A process killed with SIGKILL: its members leave everyone's presence within the documented bound.

The bound is ``presence_ttl + heartbeat`` (:attr:`RedisHub.leave_bound`): the
dead process refreshed its members at most one heartbeat before it died,
they expire ``presence_ttl`` after that refresh, and the next heartbeat of
any process with the room swept them out, with a leave event each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from scaleout_redis import SRC, RedisCluster, RedisServer

from wsline.hub import PresenceEvent
from wsline.hub_redis import RedisHub

pytestmark = pytest.mark.asyncio

HEARTBEAT = 0.25
TTL = 0.75
MEMBERS = 5
CHILD = str(Path(__file__).with_name("scaleout_member_process.py"))


async def kill_and_watch(url: str, room: str, prefix: str = "wsline:") -> None:
    async with RedisHub(url, heartbeat=HEARTBEAT, presence_ttl=TTL, prefix=prefix) as observer:
        watch = await observer.subscribe(room)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            CHILD,
            url,
            room,
            str(MEMBERS),
            str(HEARTBEAT),
            str(TTL),
            prefix,
            env={**os.environ, "PYTHONPATH": SRC},
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            line = (await asyncio.wait_for(child.stdout.readline(), 20)).decode().split()
            assert line[:1] == ["ready"], line
            addresses = set(line[1:])
            assert len(addresses) == MEMBERS
            for _ in range(MEMBERS):
                event = await watch.get(timeout=5)
                assert isinstance(event, PresenceEvent) and event.kind == "join"
            assert {c.address for c in await observer.presence(room)} == addresses
        finally:
            child.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await child.wait()
        assert child.returncode == -signal.SIGKILL
        left: dict[str, float] = {}
        while len(left) < MEMBERS:
            event = await watch.get(timeout=observer.leave_bound + 5)
            assert isinstance(event, PresenceEvent) and event.kind == "leave", event
            left[event.client.address] = time.monotonic() - killed
        assert set(left) == addresses
        slowest = max(left.values())
        # Not before they could have expired, and within the bound (+ a little for a loaded machine).
        assert slowest >= TTL - HEARTBEAT - 0.05, left
        assert slowest <= observer.leave_bound + 0.75, (slowest, observer.leave_bound)
        assert await observer.presence(room) == []
        watch.close()


async def test_sigkilled_process_members_leave_within_the_bound(redis_server: RedisServer) -> None:
    await kill_and_watch(redis_server.url, "doomed")


async def test_sigkilled_process_members_leave_within_the_bound_on_a_cluster(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    await kill_and_watch(redis_cluster.url, "doomed", prefix)
