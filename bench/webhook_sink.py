"""Webhook receivers for ``python -m bench webhooks``: one process, one port per endpoint.

``python -m bench.webhook_sink --ports 9001,9002,…`` answers every POST with 204 and counts
it; ``GET /count`` (on any port) answers the total so far, ``GET /cpu`` this process's CPU
seconds so far. HTTP/1.1 with keep-alive.

It runs on the same two cores as the engine, so it is made as cheap as a Python receiver
gets: an asyncio protocol that finds the end of the head, reads ``content-length`` and
skips the body, and answers from prebuilt bytes (no HTTP library, no request objects);
the benchmark reports its CPU per delivery beside the engine's. It parses only what the
engine's sender writes (``content-length`` bodies, no chunking).
"""

from __future__ import annotations

import argparse
import asyncio
import time

NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class Counter:
    received = 0


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.skip = 0  # body bytes of the current request still to come
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.skip:
            taken = min(self.skip, len(data))
            self.skip -= taken
            data = data[taken:]
            if self.skip:
                return
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, rest = self.buffer[:end], self.buffer[end + 4 :]
            length = 0
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = lowered.find(b"\r\n", at + 2)
                length = int(lowered[at + 17 : line_end if line_end >= 0 else len(lowered)])
            if head.startswith(b"POST"):
                Counter.received += 1
                out.append(NO_CONTENT)
            elif b" /cpu " in head[:32]:
                out.append(_answer(b"%.6f" % time.process_time()))
            else:
                out.append(_answer(str(Counter.received).encode()))
            if len(rest) >= length:
                self.buffer = rest[length:]
            else:
                self.skip, self.buffer = length - len(rest), b""
                break
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def main(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Sink, "127.0.0.1", port, backlog=1024) for port in ports]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    asyncio.run(main([int(p) for p in parser.parse_args().ports.split(",")]))
