"""Delivery to a real receiver on loopback: Standard Webhooks headers checked with the
reference verifier (pip ``standardwebhooks``), rotation's two signatures, failures,
timeouts and recovery in the delivery log, 410, no redirects, bounded reads, and a slow
endpoint that never holds the others."""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from standardwebhooks import Webhook as Verifier

from engine.service import run_service
from tests.conftest import create_dataset, make_config, signup
from tests.webhook_receiver import running_receiver


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **{"webhooks.allow_private_targets": True, "webhooks.timeout_seconds": 2.0})


async def _hook(client, headers, url, events=("*",)):
    r = await client.post("/v1/webhooks", headers=headers, json={"url": url, "events": list(events)})
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def _touch(client, headers, ds, text="x"):
    r = await client.patch(f"/v1/datasets/{ds}", headers=headers, json={"description": text})
    assert r.status_code == 200, r.text


async def _deliveries(client, headers, hook):
    r = await client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]["deliveries"]


async def _until(predicate, *, step=0.02):
    while not await predicate():
        await trio.sleep(step)


async def test_delivery_verifies_with_the_reference_library(client, alice):
    async with running_receiver("ok") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"], "first words")
        await rx.wait_for(1)
        got = rx.received[0]
        payload = Verifier(hook["secret"]).verify(got.body, got.headers)
        assert payload["type"] == "dataset.updated" and payload["data"]["dataset_id"] == ds["dataset_id"]
        assert set(payload) == {"type", "timestamp", "data"} and payload["timestamp"].endswith("Z")
        assert got.headers["webhook-id"].startswith("evt_") and got.headers["content-type"] == "application/json"
        assert got.headers["webhook-signature"].startswith("v1,")

        async def logged():
            found = await _deliveries(client, alice.headers, hook)
            return found and found[0]["status"] == "succeeded"

        await _until(logged)
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["event_id"] == got.headers["webhook-id"] and d["last_status_code"] == 200 and d["attempt_count"] == 1
        assert d["attempts"][0]["status_code"] == 200 and d["attempts"][0]["duration_ms"] >= 0
        assert d["attempts"][0]["response_excerpt"] == "thanks"
        with pytest.raises(Exception, match="signature"):
            Verifier("whsec_" + "A" * 32).verify(got.body, got.headers)


async def test_after_rotation_both_secrets_verify_the_same_message(client, alice):
    async with running_receiver("ok") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        rotated = (await client.post(f"/v1/webhooks/{hook['webhook_id']}/rotate-secret", headers=alice.headers)).json()["data"]
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"])
        await rx.wait_for(1)
        got = rx.received[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        Verifier(hook["secret"]).verify(got.body, got.headers)
        Verifier(rotated["secret"]).verify(got.body, got.headers)


async def test_failure_timeout_then_recovery_are_logged_and_retry_resends_the_same_id(client, alice):
    async with running_receiver("fail") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"])

        async def attempts(n):
            found = await _deliveries(client, alice.headers, hook)
            return found and found[0]["attempt_count"] >= n

        await _until(lambda: attempts(1))
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["status"] == "pending" and d["last_status_code"] == 500 and d["next_attempt_at"] is not None
        view = (await client.get(f"/v1/webhooks/{hook['webhook_id']}", headers=alice.headers)).json()["data"]
        assert view["failing_since"] is not None and view["status"] == "enabled"

        rx.behaviour = "hang"  # the receiver stops answering: the attempt is cut at the timeout
        retry = f"/v1/webhooks/{hook['webhook_id']}/deliveries/{d['delivery_id']}/retry"
        assert (await client.post(retry, headers=alice.headers)).status_code == 202
        await _until(lambda: attempts(2))
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["last_status_code"] is None and "timeout" in d["last_error"]

        rx.behaviour = "ok"  # recovered
        assert (await client.post(retry, headers=alice.headers)).status_code == 202
        await _until(lambda: attempts(3))
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["status"] == "succeeded" and [a["status_code"] for a in d["attempts"]] == [500, None, 200]
        assert len({r.headers["webhook-id"] for r in rx.received}) == 1 and len(rx.received) == 3
        view = (await client.get(f"/v1/webhooks/{hook['webhook_id']}", headers=alice.headers)).json()["data"]
        assert view["failing_since"] is None


async def test_410_disables_the_endpoint_at_once(client, alice):
    async with running_receiver("gone") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"], "a")

        async def disabled():
            view = (await client.get(f"/v1/webhooks/{hook['webhook_id']}", headers=alice.headers)).json()["data"]
            return view["status"] == "disabled"

        await _until(disabled)
        view = (await client.get(f"/v1/webhooks/{hook['webhook_id']}", headers=alice.headers)).json()["data"]
        assert view["disabled_reason"] == "gone"
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["status"] == "failed" and d["last_status_code"] == 410 and d["next_attempt_at"] is None
        # A disabled endpoint gets no new deliveries, and a retry is refused until it is enabled.
        await _touch(client, alice.headers, ds["dataset_id"], "b")
        assert len(await _deliveries(client, alice.headers, hook)) == 1
        r = await client.post(f"/v1/webhooks/{hook['webhook_id']}/deliveries/{d['delivery_id']}/retry", headers=alice.headers)
        assert r.status_code == 409
        assert len(rx.received) == 1


async def test_redirects_are_not_followed(client, alice):
    async with running_receiver("redirect") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"])

        async def tried():
            found = await _deliveries(client, alice.headers, hook)
            return found and found[0]["attempt_count"] >= 1

        await _until(tried)
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["last_status_code"] == 302 and d["status"] == "pending"
        assert [r.path for r in rx.received] == ["/hook"]


async def test_a_large_answer_is_read_only_up_to_64_kib(client, alice):
    """The receiver announces 100 MiB, sends 128 KiB and stalls: reading it all would end in
    a timeout; the sender stops at 64 KiB and records the 200."""
    async with running_receiver("trickle") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"])

        async def done():
            found = await _deliveries(client, alice.headers, hook)
            return found and found[0]["attempt_count"] >= 1

        await _until(done)
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["status"] == "succeeded" and d["last_status_code"] == 200 and d["last_error"] is None
        assert len(d["attempts"][0]["response_excerpt"]) == 1024


async def test_an_answer_holding_nul_is_recorded(client, alice):
    """PostgreSQL text cannot hold NUL: recording the receiver's excerpt failed the whole
    write there (the delivery never left pending). The excerpt keeps U+FFFD in its place."""
    async with running_receiver("nul") as rx:
        hook = await _hook(client, alice.headers, rx.url)
        ds = await create_dataset(client, alice.headers)
        await _touch(client, alice.headers, ds["dataset_id"])

        async def done():
            found = await _deliveries(client, alice.headers, hook)
            return found and found[0]["attempt_count"] >= 1

        with trio.fail_after(20):
            await _until(done)
        (d,) = await _deliveries(client, alice.headers, hook)
        assert d["status"] == "succeeded" and d["last_status_code"] == 200
        assert d["attempts"][0]["response_excerpt"] in ("ok\x00\x00done", "ok\ufffd\ufffddone")  # SQLite keeps NUL


async def test_a_slow_endpoint_never_holds_the_others(tmp_path):
    """One endpoint hangs on every request; the other gets all its deliveries while every
    slot of the slow one is still held (its attempts are not over)."""
    cfg = make_config(tmp_path / "data", **{"webhooks.allow_private_targets": True, "webhooks.timeout_seconds": 60.0,
                                            "webhooks.per_endpoint_concurrency": 2})
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client, \
                running_receiver("hang") as slow, running_receiver("ok") as fast:
            alice = await signup(client)
            await _hook(client, alice.headers, slow.url, ["dataset.updated"])
            await _hook(client, alice.headers, fast.url, ["dataset.updated"])
            ds = await create_dataset(client, alice.headers)
            for i in range(12):
                await _touch(client, alice.headers, ds["dataset_id"], f"v{i}")
            await fast.wait_for(12, status=200)
            assert len(slow.received) <= 2 and set(slow.answered) == {0}  # 2 slots, both still hanging
            ids = [orjson.loads(r.body)["data"]["dataset_id"] for r in fast.received]
            assert ids == [ds["dataset_id"]] * 12
        handle.stop()
