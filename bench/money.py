"""Money: provider analytics and buyer spend over a long history, and what the ledger adds to an access.

    python -m bench money [--searches 1000000] [--accesses 200000] [--providers 100] [--requests 40]

History is **loaded into the SQLite store directly** (plain ``executemany`` into the
engine's own tables, after the engine migrated them; no HTTP, no recorder): ``--searches``
searches over the last 12 months by 200 buyer tenants, each with 3 impressions of random
providers' datasets (so 3× as many impression rows), and ``--accesses`` charged accesses
with their ``charge`` and ``fee`` ledger entries and their payout statements, across
``--providers`` providers (5 datasets each). One provider and one buyer are real accounts
(signed up through the API): the requests measured are theirs, their share of the history
is what a uniform draw gives them (1/100 of the impressions and accesses, 1/200 of the
searches).

Then, with the engine (``ipto serve``, SQLite, its own process) restarted on that store:

* ``GET /v1/provider/analytics`` for the provider over one month, and ``GET
  /v1/agent/spend`` for the buyer over a year (group_by day, dataset, api_key), one client,
  p50/p99 over ``--requests`` requests; same-run baseline: ``GET /v1/me`` (an
  authenticated request that reads one row);
* recording an access: ``POST /v1/objects/{id}/access`` on a ``premium``/``per_retrieval``
  dataset (access row + charge and fee ledger entries + the statement upsert, one
  transaction) against the same request on an ``open`` dataset (access row only, no ledger
  writes), interleaved, one client; ratio of p50s and of throughputs.

``--store postgres`` runs the same on a durable PostgreSQL cluster the benchmark starts
(``bench/stores.py``): the history goes in with ``\\copy`` (CSV through ``psql``) instead.

Left out: concurrent writers while reading, network distance, the CLI; the history's text
is synthetic (keywords from a 5,000-word list).
"""

from __future__ import annotations

import argparse
import csv
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, stores  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.search import _percentile  # noqa: E402

BUYERS = 200
DATASETS_PER_PROVIDER = 5
IMPRESSIONS_PER_SEARCH = 3
WORDS = 5_000


def add_arguments(p: argparse.ArgumentParser, quick: bool = False) -> None:
    p.add_argument("--searches", type=int, default=200_000 if quick else 1_000_000)
    p.add_argument("--accesses", type=int, default=40_000 if quick else 200_000)
    p.add_argument("--providers", type=int, default=100)
    p.add_argument("--requests", type=int, default=40, help="requests per measured view")
    p.add_argument("--access-requests", type=int, default=300, help="accesses per kind (charged, free)")
    stores.add_argument(p)


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


Sink = Callable[[str, Sequence[str], list[tuple[Any, ...]]], None]


class SqliteSink:
    """Rows into the engine's SQLite file with ``executemany``."""

    def __init__(self, db: Path) -> None:
        self.c = sqlite3.connect(db)
        self.c.execute("PRAGMA journal_mode=WAL")
        self.c.execute("PRAGMA synchronous=OFF")

    def __call__(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.c.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
        self.c.commit()

    def close(self) -> None:
        self.c.execute("ANALYZE")
        self.c.close()


class PgSink:
    """Rows into the engine's PostgreSQL database: a CSV file, then ``\\copy`` through psql
    (an empty unquoted field is NULL)."""

    def __init__(self, server: Any, database: str, work: Path) -> None:
        self.server, self.database, self.file = server, database, work / "copy.csv"

    def __call__(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        with open(self.file, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        self.server.psql(f"\\copy {table} ({', '.join(columns)}) FROM '{self.file}' WITH (FORMAT csv)", self.database)

    def close(self) -> None:
        self.server.psql("ANALYZE", self.database)


_SEARCH_COLUMNS = ("id", "tenant_id", "user_id", "api_key_id", "query", "mode", "dataset_ids", "keywords", "result_count", "created_at")
_IMPRESSION_COLUMNS = ("search_id", "rank", "dataset_id", "provider_tenant_id", "buyer_tenant_id", "object_id", "chunk_index", "created_at")
_ACCESS_COLUMNS = ("id", "buyer_tenant_id", "user_id", "api_key_id", "provider_tenant_id", "dataset_id", "object_id", "search_id",
                   "result_id", "pricing_model", "monetization_mode", "amount_micros", "fee_micros", "currency", "period", "created_at")
_LEDGER_COLUMNS = ("id", "access_id", "kind", "amount_micros", "currency", "buyer_tenant_id", "provider_tenant_id", "dataset_id",
                   "api_key_id", "period", "created_at")
_PAYOUT_COLUMNS = ("id", "provider_tenant_id", "period", "currency", "period_start", "period_end", "created_at")
_OBJECT_COLUMNS = ("id", "tenant_id", "dataset_id", "blob_id", "upload_id", "original_filename", "mime_type", "size_bytes", "status",
                   "review_state", "created_at", "updated_at", "uploaded_at")


def load_history(sink: Sink, args: argparse.Namespace, provider0: str, buyer0: str, now: datetime) -> dict[str, Any]:
    """Searches, impressions, accesses, ledger entries and statements, straight into the store."""
    from engine.store.money import month_bounds

    rng = random.Random(19)
    providers = [provider0] + [f"tnt_benchprov{i:011d}" for i in range(1, args.providers)]
    datasets = {p: [f"dset_b{i:03d}{j}{'x' * 14}"[:25] for j in range(DATASETS_PER_PROVIDER)] for i, p in enumerate(providers)}
    buyers = [buyer0] + [f"tnt_benchbuyer{i:010d}" for i in range(1, BUYERS)]
    keys = {b: [None, f"key_{b[-6:]}a", f"key_{b[-6:]}b"] for b in buyers}
    words = [f"w{i}" for i in range(WORDS)] + ["the", "of", "and"]
    year = 365 * 86400
    t0 = time.perf_counter()
    batch = 50_000
    for start in range(0, args.searches, batch):
        searches, impressions = [], []
        for n in range(start, min(start + batch, args.searches)):
            when = now - timedelta(seconds=rng.randrange(year))
            buyer = rng.choice(buyers)
            kw = [words[min(int(rng.paretovariate(1.1)), len(words) - 1)] for _ in range(rng.randint(1, 4))]
            sid = f"srch_b{n:019d}"
            searches.append((sid, buyer, None, rng.choice(keys[buyer]), " ".join(kw), "hybrid", "[]",
                             "[" + ",".join(f'"{k}"' for k in kw) + "]", IMPRESSIONS_PER_SEARCH, _ts(when)))
            for rank in range(1, IMPRESSIONS_PER_SEARCH + 1):
                p = rng.choice(providers)
                impressions.append((sid, rank, rng.choice(datasets[p]), p, buyer, f"obj_b{n:020d}", 0, _ts(when)))
        sink("searches", _SEARCH_COLUMNS, searches)
        sink("impressions", _IMPRESSION_COLUMNS, impressions)
    statements: set[tuple[str, str]] = set()
    for start in range(0, args.accesses, batch):
        accesses, ledger = [], []
        for n in range(start, min(start + batch, args.accesses)):
            when = now - timedelta(seconds=rng.randrange(year))
            buyer, p = rng.choice(buyers), rng.choice(providers)
            ds, key = rng.choice(datasets[p]), rng.choice(keys[buyer])
            amount = rng.choice((1_000, 25_000, 1_000_000, rng.randint(1, 5_000_000)))
            fee = amount * 2000 // 10_000
            period = when.strftime("%Y-%m")
            aid = f"acc_b{n:019d}"
            accesses.append((aid, buyer, None, key, p, ds, f"obj_b{n:020d}", None, None, "per_retrieval", "premium", amount, fee, "USD",
                             period, _ts(when)))
            ledger.append((f"led_c{n:019d}", aid, "charge", amount, "USD", buyer, p, ds, key, period, _ts(when)))
            ledger.append((f"led_f{n:019d}", aid, "fee", fee, "USD", buyer, p, ds, key, period, _ts(when)))
            statements.add((p, period))
        sink("accesses", _ACCESS_COLUMNS, accesses)
        sink("ledger_entries", _LEDGER_COLUMNS, ledger)
    rows = []
    for i, (p, period) in enumerate(sorted(statements, key=lambda s: s[1])):
        start_, end = month_bounds(period)
        rows.append((f"pay_b{i:019d}", p, period, "USD", _ts(start_), _ts(end), _ts(start_)))
    sink("payouts", _PAYOUT_COLUMNS, rows)
    return {"seconds": time.perf_counter() - t0, "statements": len(rows)}


def add_objects(sink: Sink, provider: str, datasets: list[str], n: int) -> list[list[str]]:
    """``n`` active objects in each dataset (rows only: an access signs a URL, it reads no bytes)."""
    now = _ts(datetime.now(UTC))
    out = []
    for d, ds in enumerate(datasets):
        ids = [f"obj_bacc{d}{i:015d}" for i in range(n)]
        sink("objects", _OBJECT_COLUMNS, [(o, provider, ds, f"blob_{o[4:]}", f"upl_{o[4:]}", "a.txt", "text/plain", 10, "active",
                                           "approved", now, now, now) for o in ids])
        out.append(ids)
    return out


def _wait_settled(h: Any, headers: dict[str, str], timeout: float = 300) -> float:
    """Wait until the engine's settlement clock has released every loaded statement past its
    hold (it does so on start, in the background): what is measured must not share the
    engine with that catch-up, which a live engine does a month at a time."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        page = h.get("/v1/provider/payouts", headers=headers, params={"limit": "100"}).json()["data"]
        now = datetime.now(UTC)
        if all(p["status"] != "pending" or datetime.fromisoformat(p["release_at"]) > now for p in page["payouts"]):
            return time.perf_counter() - t0
        time.sleep(1)
    raise RuntimeError("the settlement clock did not release the loaded history in time")


def _measure(h: Any, path: str, params: dict[str, str], headers: dict[str, str], n: int) -> tuple[float, float, float]:
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = h.get(path, params=params, headers=headers)
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    wall = sum(latencies)
    return _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000, n / wall


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    if args.store == "both":
        raise SystemExit("bench money: --store sqlite or postgres (one store per run: the history takes minutes to load)")
    with stores.open_stores(args.store, work) as st:
        return _run(args, work, st)


def _run(args: argparse.Namespace, work: Path, st: stores.Stores) -> list[Section]:
    import httpx

    data = work / "data"
    now = datetime.now(UTC)
    env = st.env(args.store)
    with harness.engine(data, env=env) as server, httpx.Client(base_url=server.base, timeout=60) as h:
        def signup(email: str) -> dict[str, Any]:
            return h.post("/v1/auth/signup", json={"email": email, "password": "bench password"}).json()["data"]

        provider, buyer = signup("provider@example.com"), signup("buyer@example.com")
        ph = {"Authorization": f"Bearer {provider['token']}"}
        made = [h.post("/v1/datasets", headers=ph, json={"name": f"access {mode}", "visibility": "listed", "monetization_mode": mode,
                                                          "pricing_model": "per_retrieval", "price_micros": 1_000}).json()["data"]
                for mode in ("premium", "open")]
    pid, bid = provider["tenant"]["tenant_id"], buyer["tenant"]["tenant_id"]
    store_name = stores.NAMES[args.store]
    print(f"loading {args.searches:,} searches ({args.searches * IMPRESSIONS_PER_SEARCH:,} impressions), {args.accesses:,} accesses"
          f" across {args.providers} providers into {store_name} directly …", flush=True)
    sink: SqliteSink | PgSink = (SqliteSink(data / "engine.db") if args.store == "sqlite"
                                 else PgSink(st.postgres, env["IPTO_STORE_URL"].rsplit("/", 1)[1], work))
    loaded = load_history(sink, args, pid, bid, now)
    objects = add_objects(sink, pid, [d["dataset_id"] for d in made], args.access_requests)
    sink.close()
    print(f"  loaded in {loaded['seconds']:.0f} s ({loaded['statements']} statements)", flush=True)

    rows: list[Row] = []
    with harness.engine(data, env=env) as server, httpx.Client(base_url=server.base, timeout=60) as h:
        ph, bh = {"Authorization": f"Bearer {provider['token']}"}, {"Authorization": f"Bearer {buyer['token']}"}
        this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        month_from, month_to = _ts((this_month - timedelta(days=1)).replace(day=1)), _ts(this_month)  # last month
        year_from = _ts(now - timedelta(days=365))
        settled = _wait_settled(h, ph)
        print(f"  the settlement clock released the loaded history's past months in {settled:.0f} s (not measured)", flush=True)
        for _ in range(5):  # warm: connections, caches
            h.get("/v1/me", headers=bh)
            h.get("/v1/provider/analytics", headers=ph, params={"from": month_from, "to": month_to})
        me = _measure(h, "/v1/me", {}, bh, args.requests)
        rows.append(Row("me", "GET /v1/me (authenticated one-row read)", "req/s", [me[2]], is_baseline=True, p50=[me[0]], p99=[me[1]],
                        short="/v1/me"))
        views = [("analytics-month", "GET /v1/provider/analytics, one provider, one month", "/v1/provider/analytics", ph,
                  {"from": month_from, "to": month_to}),
                 ("analytics-year", "GET /v1/provider/analytics, one provider, a year", "/v1/provider/analytics", ph, {"from": year_from})]
        views += [(f"spend-{g}", f"GET /v1/agent/spend?group_by={g}, one buyer, a year", "/v1/agent/spend", bh,
                   {"group_by": g, "from": year_from}) for g in ("day", "dataset", "api_key")]
        views.append(("payouts", "GET /v1/provider/payouts (12 statements, previews)", "/v1/provider/payouts", ph, {}))
        views.append(("activity", "GET /v1/agent/activity/accesses?limit=100", "/v1/agent/activity/accesses", bh, {"limit": "100"}))
        for key, label, path, headers, params in views:
            p50, p99, rps = _measure(h, path, params, headers, args.requests)
            print(f"  {label:60s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
            rows.append(Row(key, label, "req/s", [rps], baseline="me", p50=[p50], p99=[p99],
                            note="target p50 ≤ 150 ms" if key in ("analytics-month", "spend-day") else ""))

        lat: dict[str, list[float]] = {"charged": [], "free": []}
        charges = []
        for i in range(args.access_requests):
            for kind, ids in (("charged", objects[0]), ("free", objects[1])):
                t0 = time.perf_counter()
                r = h.post(f"/v1/objects/{ids[i]}/access", headers=bh, json={})
                lat[kind].append(time.perf_counter() - t0)
                assert r.status_code == 201, r.text
                if kind == "charged":
                    charges.append(r.json()["data"]["charge"]["amount_micros"])
        assert set(charges) == {1_000}
        free_p50 = _percentile(lat["free"], 0.5) * 1000
        charged_p50 = _percentile(lat["charged"], 0.5) * 1000
        rows.append(Row("access-free", "POST access, open dataset (no ledger writes)", "req/s", [len(lat["free"]) / sum(lat["free"])],
                        is_baseline=True, p50=[free_p50], p99=[_percentile(lat["free"], 0.99) * 1000], short="free access"))
        rows.append(Row("access-charged", "POST access, premium dataset (charge + fee + statement)", "req/s",
                        [len(lat["charged"]) / sum(lat["charged"])], baseline="access-free", p50=[charged_p50],
                        p99=[_percentile(lat["charged"], 0.99) * 1000], note="target ≤ 1.3× the free access's cost"))
        print(f"  access: charged p50 {charged_p50:.2f} ms, free p50 {free_p50:.2f} ms, ratio {charged_p50 / free_p50:.2f}×", flush=True)
        peak = server.peak_rss_mib()
    return [Section(
        key="money", title=st.title(f"money views over {args.searches:,} searches and {args.accesses:,} accesses ({args.providers} providers)"),
        rows=rows,
        baselines=["GET /v1/me: an authenticated request reading one row, same engine, same run",
                   "free access: the same POST /v1/objects/{id}/access on an open dataset (no ledger entries, no statement)",
                   *st.baselines()],
        notes=[f"history loaded into {store_name} directly (not through the API) in {loaded['seconds']:.0f} s; one client",
               f"access cost ratio (p50 charged ÷ p50 free): {charged_p50 / free_p50:.2f}×; engine peak RSS {peak:.0f} MiB"],
        meta={"searches": args.searches, "accesses": args.accesses, "providers": args.providers, "store": args.store},
    )]


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["money", *sys.argv[1:]]))
