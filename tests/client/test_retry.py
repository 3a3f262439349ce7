"""Retries with backoff, the Idempotency-Key that makes a retried POST safe, typed errors."""

from __future__ import annotations

import pytest

from engine.client import AsyncClient, ConnectionFailed, RetryPolicy
from engine.client.errors import InvalidRequest, NotFound, ServerError, Unauthenticated
from tests.client.conftest import FAST


async def test_a_post_retried_after_a_lost_answer_creates_one_dataset(api, recorder, client, alice):
    recorder.faults.append(("POST", "drop-after"))  # the server creates it, the answer is lost
    ds = await api.create_dataset("Once")
    posts = [headers for method, path, headers in recorder.seen if method == "POST"]
    assert len(posts) == 2
    assert posts[0]["Idempotency-Key"] == posts[1]["Idempotency-Key"] and len(posts[0]["Idempotency-Key"]) == 36
    assert recorder.answers[-1].headers.get("Idempotent-Replayed") == "true"
    listed = (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]["datasets"]
    assert [d["dataset_id"] for d in listed] == [ds["dataset_id"]]


async def test_every_post_gets_its_own_key(api, recorder):
    await api.create_dataset("a")
    await api.create_dataset("b")
    keys = [h["Idempotency-Key"] for m, _, h in recorder.seen if m == "POST"]
    assert len(set(keys)) == 2


async def test_an_explicit_key_is_used_as_given(api, recorder):
    first = await api.create_dataset("k", idempotency_key="my-key-0001")
    again = await api.create_dataset("k", idempotency_key="my-key-0001")
    assert first["dataset_id"] == again["dataset_id"]
    assert recorder.answers[-1].headers.get("Idempotent-Replayed") == "true"


async def test_5xx_and_refused_connections_are_retried(api, recorder, alice):
    recorder.faults += [("GET", "503"), ("GET", "refuse"), ("GET", "503")]
    me = await api.me()
    assert me["user"]["user_id"] == alice.user_id
    assert [m for m, p, _ in recorder.seen if p == "/v1/me"] == ["GET"] * 4


async def test_retries_give_up_with_the_last_error(service, alice, recorder):
    recorder.faults += [("GET", "503")] * 5
    async with AsyncClient(service.url, token=alice.token, retry=RetryPolicy(attempts=3, backoff_seconds=0.01),
                           transport=recorder) as api:
        with pytest.raises(ServerError) as info:
            await api.me()
    assert info.value.status == 503 and info.value.code == "unavailable" and info.value.request_id == "req_t"
    assert len(recorder.seen) == 3


async def test_a_patch_is_not_retried_after_it_was_sent(api, recorder):
    ds = await api.create_dataset("p")
    recorder.faults.append(("PATCH", "drop-after"))
    with pytest.raises(ConnectionFailed):
        await api.update_dataset(ds["dataset_id"], name="q")
    assert [m for m, _, _ in recorder.seen].count("PATCH") == 1


async def test_4xx_are_not_retried_and_carry_the_envelope(api, recorder):
    with pytest.raises(NotFound) as info:
        await api.get_dataset("dset_missing")
    err = info.value
    assert err.status == 404 and err.code == "not_found" and err.message == "dataset not found"
    assert err.request_id.startswith("req_") and err.request_id in str(err)
    with pytest.raises(InvalidRequest) as bad:
        await api.create_dataset("x", visibility="everyone")
    assert "visibility" in bad.value.details["fields"]
    assert len(recorder.seen) == 2


async def test_bad_credentials_raise_unauthenticated(service):
    async with AsyncClient(service.url, token="nope", retry=FAST) as api:
        with pytest.raises(Unauthenticated) as info:
            await api.me()
    assert info.value.status == 401


async def test_no_server_raises_connection_failed_after_retries():
    async with AsyncClient("http://127.0.0.1:9", token="t", retry=RetryPolicy(attempts=2, backoff_seconds=0.01)) as api:
        with pytest.raises(ConnectionFailed) as info:
            await api.me()
    assert "127.0.0.1:9" in str(info.value)


def test_backoff_grows_exponentially_up_to_the_cap():
    policy = RetryPolicy(backoff_seconds=1, max_backoff_seconds=5, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert policy.delay(1, retry_after=3) == 3  # Retry-After is honoured
