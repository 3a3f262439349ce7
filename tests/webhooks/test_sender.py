"""The sender (h11 on Trio sockets): connections kept alive per target, a kept-alive
connection the receiver dropped is replaced without losing the attempt, and TLS checks the
URL's name (SNI and certificate) while connecting to the address that was checked."""

from __future__ import annotations

import contextlib
import datetime
import functools
import ssl

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.webhooks.sender import Sender
from tests.webhook_receiver import Receiver, running_receiver


def _sender(**extra) -> Sender:
    return Sender(**{"allow_private": True, "timeout_seconds": 5, "max_response_bytes": 65536, **extra})


async def test_connections_are_kept_alive_per_target():
    async with running_receiver("ok") as rx:
        sender = _sender()
        try:
            results = [await sender.send(rx.url, {"webhook-id": f"evt_{i}"}, b"{}") for i in range(3)]
        finally:
            await sender.aclose()
        assert [r.status_code for r in results] == [200] * 3
        assert rx.connections == 1 and len(rx.received) == 3


async def test_a_kept_alive_connection_the_receiver_dropped_is_replaced():
    async with running_receiver("ok") as rx:
        rx.close_after_answer = True  # as a receiver's keep-alive timeout does, without saying so
        sender = _sender()
        try:
            results = []
            for i in range(3):
                results.append(await sender.send(rx.url, {"webhook-id": f"evt_{i}"}, b"{}"))
                await trio.sleep(0.05)  # the close reaches us before the next attempt
        finally:
            await sender.aclose()
        assert [r.status_code for r in results] == [200] * 3, results
        assert rx.connections == 3 and [r.headers["webhook-id"] for r in rx.received] == ["evt_0", "evt_1", "evt_2"]


def _certificate(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


async def test_tls_names_the_host_while_connecting_to_the_checked_address(resolver, tmp_path):
    cert, key = _certificate("hooks.example")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    server.sni_callback = lambda _sock, name, _ctx: names.append(name)
    client = ssl.create_default_context(cadata=cert.decode())
    rx = Receiver()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_ssl_over_tcp, rx._serve, 0, server, host="127.0.0.1"))
        port = listeners[0].transport_listener.socket.getsockname()[1]
        resolver.answers["hooks.example"] = [["127.0.0.1"]]
        resolver.answers["other.example"] = [["127.0.0.1"]]  # the same server, a name its certificate does not carry
        sender = _sender(ssl_context=client)
        try:
            ok = await sender.send(f"https://hooks.example:{port}/hook", {"webhook-id": "evt_1"}, b"{}")
            wrong = await sender.send(f"https://other.example:{port}/hook", {"webhook-id": "evt_2"}, b"{}")
        finally:
            await sender.aclose()
        nursery.cancel_scope.cancel()
    assert ok.status_code == 200, ok
    assert wrong.status_code is None and "certificate" in (wrong.error or "").lower(), wrong
    assert names[0] == "hooks.example" and rx.received[0].headers["host"] == f"hooks.example:{port}"
    assert [r.headers["webhook-id"] for r in rx.received] == ["evt_1"]


class _Canned:
    """A raw receiver on loopback: answers each request with the next canned bytes (then
    closes the connection if the answer is followed by ``None``); counts connections."""

    def __init__(self, *answers: bytes | None) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buf = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while self.answers:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    buf += await stream.receive_some(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                await stream.send_all(self.answers.pop(0) or b"")
                if self.answers and self.answers[0] is None:
                    self.answers.pop(0)
                    await stream.aclose()
                    return


async def _exchange_all(canned: _Canned, n: int, **extra) -> list:
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(functools.partial(trio.serve_tcp, canned.serve, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/hook?x=1"
        sender = _sender(**extra)
        try:
            results = [await sender.send(url, {"webhook-id": f"evt_{i}"}, b'{"n": 1}') for i in range(n)]
        finally:
            await sender.aclose()
        nursery.cancel_scope.cancel()
    return results


async def test_the_request_carries_the_constant_headers_and_our_own():
    canned = _Canned(b"HTTP/1.1 204 No Content\r\n\r\n")
    (result,) = await _exchange_all(canned, 1)
    assert result.status_code == 204 and result.error is None
    head, _, body = canned.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1" and body == b'{"n": 1}'
    assert {b"content-type: application/json", b"user-agent: ipto-webhooks/1", b"webhook-id: evt_0",
            b"content-length: 8"} <= set(lines) and any(line.startswith(b"host: 127.0.0.1:") for line in lines)


async def test_answers_chunked_informational_and_close_delimited_are_read():
    canned = _Canned(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 202 Accepted\r\n\r\nuntil the end", None,
    )
    results = await _exchange_all(canned, 3)
    assert [(r.status_code, r.excerpt) for r in results] == [(200, "hello world"), (201, "ok"), (202, "until the end")]
    assert canned.connections == 1  # chunked and sized answers keep the connection


async def test_a_malformed_answer_fails_the_attempt():
    for answer in (b"HTTP/2 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"):
        (result,) = await _exchange_all(_Canned(answer), 1)
        assert result.status_code is None and result.error and "ProtocolError" in result.error, (answer, result)


async def test_a_chunked_answer_is_read_up_to_the_cap_then_dropped():
    chunk = b"4000\r\n" + b"y" * 0x4000 + b"\r\n"
    canned = _Canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 8 + b"0\r\n\r\n",
                     b"HTTP/1.1 204 No Content\r\n\r\n")
    first, second = await _exchange_all(canned, 2, max_response_bytes=3 * 0x4000)
    assert first.status_code == 200 and second.status_code == 204
    assert canned.connections == 2  # the first was dropped after the cap, not read to its end
