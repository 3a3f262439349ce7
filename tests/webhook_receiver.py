"""A real HTTP receiver on loopback for webhook tests (h11 over a Trio TCP listener).

Its ``behaviour`` decides each answer: ``"ok"`` (200), ``"fail"`` (500), ``"gone"``
(410), ``"hang"`` (never answers), ``"redirect"`` (302 to ``/elsewhere``), ``"big"``
(200 with a body of 1 MiB), ``"nul"`` (200 with NUL bytes in its body). Every request it received is kept with its headers and body.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
import trio


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int = 0
    behaviour: str = "ok"
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)
    connections: int = 0  # accepted so far
    close_after_answer: bool = False  # drop each connection once answered, unannounced (a keep-alive timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ok_bodies(self) -> list[Received]:
        return [r for r, code in zip(self.received, self.answered, strict=False) if code == 200]

    async def wait_for(self, count: int, *, status: int | None = None) -> None:
        """Until ``count`` requests (answered ``status``, if given) have arrived."""
        while (len(self.received) if status is None else self.answered.count(status)) < count:
            await self.arrived.wait()
            self.arrived = trio.Event()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        self.connections += 1
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    await self._answer(conn, stream, request, bytes(body))
                    if conn.our_state is h11.MUST_CLOSE or self.close_after_answer:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, body: bytes) -> None:
        behaviour = self.behaviour
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.received.append(Received(request.target.decode(), headers, body))
        if behaviour == "trickle":  # announces 100 MiB, sends 128 KiB, then stalls
            self.answered.append(200)
            self.arrived.set()
            out = conn.send(h11.Response(status_code=200, headers=[(b"content-length", str(100 * 1024 * 1024).encode())]))
            await stream.send_all(out + conn.send(h11.Data(data=b"y" * (128 * 1024))))
            await trio.sleep_forever()
        if behaviour == "hang":
            self.answered.append(0)
            self.arrived.set()
            await trio.sleep_forever()
        code, extra, payload = {
            "ok": (200, [], b"thanks"),
            "fail": (500, [], b"broken"),
            "gone": (410, [], b"gone"),
            "redirect": (302, [(b"location", b"/elsewhere")], b""),
            "big": (200, [], b"x" * (1024 * 1024)),
            "nul": (200, [], b"ok\x00\x00done"),
        }[behaviour]
        self.answered.append(code)
        self.arrived.set()
        out = conn.send(h11.Response(status_code=code, headers=[(b"content-length", str(len(payload)).encode()), *extra]))
        out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)


@contextlib.asynccontextmanager
async def running_receiver(behaviour: str = "ok") -> AsyncIterator[Receiver]:
    receiver = Receiver(behaviour=behaviour)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, receiver._serve, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        yield receiver
        nursery.cancel_scope.cancel()
