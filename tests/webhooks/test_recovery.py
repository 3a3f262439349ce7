"""kill -9 of the engine with events pending: after a restart every event is delivered
(at least once; a repeat carries the same webhook-id), none lost; with deliveries in their
own process and in the serving process (the default). The leases keep their default
length (120 s): the restarted engine sends at once because it takes over the leases of the
dead owners, not because they expired. And a delivery process killed alone is started
again by ipto serve, which goes on delivering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
import trio
from standardwebhooks import Webhook as Verifier

from engine.config import load_config
from tests.conftest import as_env, backend_overrides
from tests.rawdb import query
from tests.test_service import _free_port, _wait_healthy
from tests.webhook_receiver import running_receiver

EVENTS = 30


@pytest.mark.parametrize("own_process", [True, False])
async def test_kill_9_with_events_pending_loses_none(tmp_path, own_process):
    data_dir = tmp_path / "data"
    backend = backend_overrides()
    env = {**os.environ, **as_env({**backend, "webhooks.allow_private_targets": True, "webhooks.own_process": own_process})}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - a file, not a pipe nobody reads

    async def start() -> tuple[subprocess.Popen, str]:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                                stdout=subprocess.DEVNULL, stderr=log, env=env)
        base = f"http://127.0.0.1:{port}"
        await trio.to_thread.run_sync(_wait_healthy, base, proc)
        return proc, base

    async with running_receiver("fail") as rx:
        proc, base = await start()
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                signup = (await client.post("/v1/auth/signup", json={"email": "k@example.com", "password": "long enough pw"})).json()
                owner = {"Authorization": f"Bearer {signup['data']['token']}"}
                hook = (await client.post("/v1/webhooks", headers=owner, json={"url": rx.url, "events": ["*"]})).json()["data"]
                ds = (await client.post("/v1/datasets", headers=owner, json={"name": "k"})).json()["data"]["dataset_id"]
                for i in range(EVENTS):
                    r = await client.patch(f"/v1/datasets/{ds}", headers=owner, json={"description": f"version {i}"})
                    assert r.status_code == 200
            # Not before the deliveries are under way (the delivery process takes a moment to
            # start): some failed (tried again 5 s later), some in flight, leased to the
            # process killed, the rest never tried.
            with trio.fail_after(60):  # bounds on waiting, not performance figures
                await rx.wait_for(EVENTS // 3)
                rx.behaviour = "hang"
                await rx.wait_for(1, status=0)
        finally:
            proc.send_signal(signal.SIGKILL)  # with deliveries failed, in flight and never tried
            proc.wait(timeout=30)
        rx.behaviour = "ok"
        cfg = load_config(env={}, overrides={"data_dir": data_dir, **backend})
        events = {row[0] for row in query(cfg, "SELECT id FROM webhook_events")}
        assert len(events) == EVENTS

        proc, base = await start()
        try:
            with trio.fail_after(90):  # a bound on waiting, not a performance figure
                while not events <= {r.headers["webhook-id"] for r in rx.ok_bodies()}:
                    await trio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    delivered = rx.ok_bodies()
    assert {r.headers["webhook-id"] for r in delivered} == events
    for r in delivered:
        assert Verifier(hook["secret"]).verify(r.body, r.headers)["type"] == "dataset.updated"
    by_id: dict[str, set[bytes]] = {}
    for r in rx.received:
        by_id.setdefault(r.headers["webhook-id"], set()).add(r.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())  # a repeat is the same message


def _delivered(scrape: httpx.Response) -> float:
    """``ipto_webhook_deliveries_total{outcome="succeeded"}`` in a scrape."""
    assert scrape.status_code == 200, scrape.text
    return sum(float(line.rsplit(" ", 1)[1]) for line in scrape.text.splitlines()
               if line.startswith("ipto_webhook_deliveries_total{") and 'outcome="succeeded"' in line)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


async def test_a_killed_delivery_process_is_restarted_and_goes_on(tmp_path):
    backend = backend_overrides()
    env = {**os.environ, **as_env({**backend, "webhooks.allow_private_targets": True, "webhooks.own_process": True})}
    port = _free_port()
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - a file, not a pipe nobody reads
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        await trio.to_thread.run_sync(_wait_healthy, base, proc)
        (child,) = _children(proc.pid)
        async with running_receiver("hang") as rx, httpx.AsyncClient(base_url=base, timeout=30) as client:
            signup = (await client.post("/v1/auth/signup", json={"email": "r@example.com", "password": "long enough pw"})).json()
            owner = {"Authorization": f"Bearer {signup['data']['token']}"}
            await client.post("/v1/webhooks", headers=owner, json={"url": rx.url, "events": ["*"]})
            ds = (await client.post("/v1/datasets", headers=owner, json={"name": "r"})).json()["data"]["dataset_id"]
            for i in range(3):
                assert (await client.patch(f"/v1/datasets/{ds}", headers=owner, json={"description": f"v{i}"})).status_code == 200
            with trio.fail_after(30):  # bounds on waiting, not performance figures
                await rx.wait_for(3)  # all three in flight, leased to the child, hanging
            os.kill(child, signal.SIGKILL)
            rx.behaviour = "ok"
            with trio.fail_after(60):  # well inside the 120 s leases: taken over from the dead child
                while len(rx.ok_bodies()) < 3:
                    await trio.sleep(0.1)
            assert _children(proc.pid) not in ([], [child])
            # The delivery processes' counts reach the engine's /metrics (the killed one's stay).
            with trio.fail_after(30):
                while _delivered(await client.get("/metrics")) < 3:
                    await trio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
