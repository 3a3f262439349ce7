"""The sender (h11 on Trio sockets): connections kept alive per target, a kept-alive
connection the receiver dropped is replaced without losing the attempt, and TLS checks the
URL's name (SNI and certificate) while connecting to the address that was checked."""

from __future__ import annotations

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
    return Sender(allow_private=True, timeout_seconds=5, max_response_bytes=65536, **extra)


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
