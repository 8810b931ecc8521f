"""Memory of a real coordinator process under a flood of large frames from unauthenticated clients.

Until a connection is authenticated it may send only frames up to ``AUTH_MAX_FRAME_BYTES`` (4 KiB):
websockets closes it with 1009 from the frame header, before reading the payload, so the flood costs
the coordinator no buffer. The documented bound (docs/protocol.md, "Limits"): resident memory stays
within ``FLOOD_RSS_BOUND_MIB`` of its size before the flood.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from agentswarm import protocol as p

from .helpers import Swarm

#: Growth of the coordinator's resident memory allowed under the flood (docs/protocol.md).
FLOOD_RSS_BOUND_MIB = 25
FRAME_BYTES = 15 * 1024 * 1024  # below the old 16 MiB cap that an unauthenticated client could fill
CLIENTS_PER_ROUND = 12
ROUNDS = 4


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def flood_one(port: int) -> bytes:
    """Handshake without credentials, announce one 15 MiB text frame, push its payload; return replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 101"), head
    # FIN + text opcode, masked, 64-bit length, all-zero mask key (payload bytes go through unchanged).
    writer.write(bytes([0x81, 0x80 | 127]) + FRAME_BYTES.to_bytes(8, "big") + b"\0\0\0\0")
    chunk = b"x" * 65536
    try:
        for _ in range(FRAME_BYTES // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass  # the server gave up on us: fine
    try:
        replies = await asyncio.wait_for(reader.read(4096), 30)
    except OSError:
        replies = b""
    writer.close()
    return replies


async def test_unauthenticated_flood_of_large_frames_stays_within_bound(redis_swarm: Swarm) -> None:
    coordinator = redis_swarm.start_coordinator()
    await asyncio.sleep(0.5)
    before = rss_mib(coordinator.pid)
    peak = before
    closes = 0
    for _ in range(ROUNDS):
        flood = asyncio.gather(*(flood_one(redis_swarm.port) for _ in range(CLIENTS_PER_ROUND)))
        while not flood.done():
            peak = max(peak, rss_mib(coordinator.pid))
            await asyncio.sleep(0.02)
        for replies in flood.result():
            # A close frame with code 1009 (message too big), sent from the frame header alone.
            closes += (1009).to_bytes(2, "big") in replies
        peak = max(peak, rss_mib(coordinator.pid))
    print(f"coordinator RSS {before:.1f} MiB before, {peak:.1f} MiB peak under the flood")
    assert peak - before < FLOOD_RSS_BOUND_MIB, (before, peak)
    assert closes == ROUNDS * CLIENTS_PER_ROUND
    assert p.AUTH_MAX_FRAME_BYTES == 4096
    # The coordinator still serves.
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_swarm.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
