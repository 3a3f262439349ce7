"""Safety: private, loopback, link-local and metadata targets are refused at creation (400)
and at delivery (DNS rebinding), unless webhooks.allow_private_targets; the sender
connects to the address it checked."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
import trio

from engine.service import run_service
from engine.webhooks.sender import Sender
from engine.webhooks.targets import TargetRefused, forbidden, parse_url, resolve
from tests.conftest import create_dataset, error_of, make_config, signup
from tests.webhook_receiver import running_receiver

REFUSED = [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.1.2.3/hook", "http://192.168.0.10/hook",
    "http://172.16.5.5/hook", "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook", "http://[fd00:ec2::254]/hook", "http://100.64.0.1/hook", "http://0.0.0.0/hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_targets_are_refused_at_creation(client, alice, url):
    r = await client.post("/v1/webhooks", headers=alice.headers, json={"url": url, "events": ["*"]})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "invalid_request" and "url" in err["details"]["fields"]


@pytest.mark.parametrize("url", ["https://a..example/hook", "https://.example/hook", f"https://{'a' * 64}.example/hook",
                                 "https://\u2603.example/hook", f"https://{'a' * 300}.example/hook"],
                         ids=["empty-label", "leading-dot", "label-64", "snowman", "label-300"])
async def test_a_host_name_idna_refuses_is_a_400_not_a_500(client, alice, resolver, url):
    # The host is IDNA-encoded before any lookup: an empty label, one over 63 characters or
    # a code point IDNA refuses raised UnicodeError there (a 500), not OSError.
    r = await client.post("/v1/webhooks", headers=alice.headers, json={"url": url, "events": ["*"]})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "invalid_request" and "not a valid host name" in err["details"]["fields"]["url"]


async def test_a_name_resolving_to_a_private_address_is_refused(client, alice, resolver):
    resolver.answers["internal.example"] = [["10.0.0.7"]]
    resolver.answers["mixed.example"] = [["93.184.216.34", "127.0.0.1"]]  # one bad answer is enough
    for url in ["https://internal.example/hook", "https://mixed.example/hook"]:
        r = await client.post("/v1/webhooks", headers=alice.headers, json={"url": url, "events": ["*"]})
        assert r.status_code == 400 and "private" in error_of(r)["message"]
    assert (await client.post("/v1/webhooks", headers=alice.headers,
                              json={"url": "https://public.example/hook", "events": ["*"]})).status_code == 400  # unknown name
    resolver.answers["public.example"] = [["93.184.216.34"]]
    r = await client.post("/v1/webhooks", headers=alice.headers, json={"url": "https://public.example/hook", "events": ["*"]})
    assert r.status_code == 201, r.text


def test_forbidden_addresses():
    for text in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1", "100.64.0.1", "224.0.0.1",
                 "fd00:ec2::254", "0.0.0.0"]:
        assert forbidden(ipaddress.ip_address(text)), text
    for text in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"]:
        assert not forbidden(ipaddress.ip_address(text)), text


async def test_dns_rebinding_is_refused_at_delivery(tmp_path, resolver):
    """The name was public when the endpoint was made and points at loopback when the
    delivery goes out: nothing reaches the receiver, the attempt is logged as refused."""
    async with running_receiver("ok") as rx:
        resolver.answers["rebind.example"] = [["93.184.216.34"], ["127.0.0.1"]]
        cfg = make_config(tmp_path / "data")
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_service, cfg)
            async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
                alice = await signup(client)
                r = await client.post("/v1/webhooks", headers=alice.headers,
                                      json={"url": f"http://rebind.example:{rx.port}/hook", "events": ["*"]})
                assert r.status_code == 201, r.text
                hook = r.json()["data"]
                ds = await create_dataset(client, alice.headers)
                await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"description": "x"})
                while True:
                    found = (await client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=alice.headers)).json()
                    deliveries = found["data"]["deliveries"]
                    if deliveries and deliveries[0]["attempt_count"]:
                        break
                    await trio.sleep(0.02)
                assert deliveries[0]["last_status_code"] is None and deliveries[0]["last_error"].startswith("target_refused")
            handle.stop()
        assert rx.received == []


async def send_once(rx, url: str):
    """One send to ``url`` through a fresh sender (private targets allowed): what the receiver got."""
    sender = Sender(allow_private=True, timeout_seconds=5, max_response_bytes=65536)
    try:
        result = await sender.send(url, {"webhook-id": "evt_1"}, b"{}")
    finally:
        await sender.aclose()
    assert result.status_code == 200, result
    (got,) = rx.received
    return got


async def test_the_sender_connects_to_the_checked_address_with_the_name_as_host(resolver):
    async with running_receiver("ok") as rx:
        resolver.answers["hooks.example"] = [["127.0.0.1"], ["10.9.9.9"]]  # a second lookup would give another address
        got = await send_once(rx, f"http://hooks.example:{rx.port}/hook?x=1")
        assert got.headers["host"] == f"hooks.example:{rx.port}" and got.path == "/hook?x=1"


async def test_an_internationalized_host_is_sent_as_its_a_label(resolver):
    """``bücher.example`` passed creation (the lookup IDNA-encodes), then every delivery
    raised UnicodeEncodeError building the ASCII ``Host`` header, out of the worker."""
    assert parse_url("https://Bücher.example/hook").host == "xn--bcher-kva.example"
    with pytest.raises(TargetRefused, match="not a valid host name"):
        parse_url("https://\u2603.example/hook")
    async with running_receiver("ok") as rx:
        resolver.answers["xn--bcher-kva.example"] = [["127.0.0.1"]]
        got = await send_once(rx, f"http://bücher.example:{rx.port}/hook")
        assert got.headers["host"] == f"xn--bcher-kva.example:{rx.port}"


async def test_the_sender_refuses_private_targets_itself():
    sender = Sender(allow_private=False, timeout_seconds=5, max_response_bytes=65536)
    result = await sender.send("http://127.0.0.1:9/hook", {}, b"{}")
    assert result.status_code is None and result.error.startswith("target_refused")
    with pytest.raises(TargetRefused):
        await resolve(parse_url("http://[::1]:9/"), False)
