"""Webhook receivers for ``python -m bench webhooks``: one process, one port per endpoint.

``python -m bench.webhook_sink --ports 9001,9002,…`` answers every POST with 204 and counts
it; ``GET /count`` (on any port) answers the total so far. h11 over Trio, keep-alive.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import h11
import trio

received = 0


async def serve(stream: trio.SocketStream) -> None:
    global received
    conn = h11.Connection(h11.SERVER)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                method = event.method
            elif isinstance(event, h11.EndOfMessage):
                if method == b"POST":
                    received += 1
                    out = conn.send(h11.Response(status_code=204, headers=[]))
                else:
                    body = str(received).encode()
                    out = conn.send(h11.Response(status_code=200, headers=[(b"content-length", str(len(body)).encode())]))
                    out += conn.send(h11.Data(data=body))
                await stream.send_all(out + conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


async def main(ports: list[int]) -> None:
    async with trio.open_nursery() as nursery:
        for port in ports:
            await nursery.start(functools.partial(trio.serve_tcp, serve, port, host="127.0.0.1"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    trio.run(main, [int(p) for p in parser.parse_args().ports.split(",")])
