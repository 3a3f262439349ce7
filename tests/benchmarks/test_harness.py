"""The benchmark harness (bench/): its arithmetic, its files, and that it leaves nothing running.

The figures themselves are never asserted (a benchmark reports, it does not judge); what is
checked is that ``python -m bench`` runs end to end against the real servers, prints every
figure next to its same-run baseline, writes its JSON, Markdown and chart, and that every
server it started is gone afterwards, whether it ends normally, on an error, or is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench import harness, report

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _servers(tag: str) -> set[int]:
    """Processes that look like servers the harness starts, started under ``tag`` (an
    environment variable every child inherits): servers of other test runs or sessions on
    the same machine are not ours to count."""
    marker = f"IPTO_BENCH_TEST_TAG={tag}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if not (b"engine serve" in cmd or b"bench.ceiling" in cmd or b"bench.floor_server" in cmd or b"tus_server" in cmd):
                continue
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        if _alive(int(entry.name)):
            found.add(int(entry.name))
    return found


# -- arithmetic and files ---------------------------------------------------------------

def test_a_ratio_is_the_median_over_the_same_run_baselines_median():
    section = report.Section("s", "Some section", [
        report.Row("base", "baseline", "req/s", [100.0, 300.0, 200.0], is_baseline=True),
        report.Row("ours", "ours", "req/s", [50.0, 90.0, 10.0], baseline="base", note="target ≥ 0.4"),
        report.Row("rss", "peak RSS", "MiB", [80.0], base_values=[100.0, 60.0], lower_is_better=True),
        report.Row("alone", "no baseline", "MiB", [float("nan"), 7.0]),
    ])
    assert section.ratio(section.row("base")) == 1.0
    assert section.ratio(section.row("ours")) == 50.0 / 200.0
    assert section.ratio(section.row("rss")) == 1.0
    assert section.ratio(section.row("alone")) is None
    assert report.median([float("nan"), 7.0]) == 7.0
    text = report.text_table(section)
    ours = next(line for line in text.splitlines() if line.startswith("ours"))
    assert "50.0" in ours and "10.0–90.0" in ours and "0.25" in ours and "target ≥ 0.4" in ours
    assert "1.00 (base)" in next(line for line in text.splitlines() if line.startswith("baseline"))


def test_save_writes_every_runs_figure_a_table_and_a_chart(tmp_path):
    section = report.Section("s", "Some section", [
        report.Row("base", "baseline", "MiB/s", [10.0, 12.0], is_baseline=True),
        report.Row("ours", "ours", "MiB/s", [15.0, 9.0], baseline="base", p50=[1.0, 2.0], p99=[3.0, 4.0]),
    ], baselines=["baseline = what it means"])
    js, md, png = report.save([section], "unit", "python -m bench unit", 1.5, tmp_path)
    data = json.loads(js.read_text())
    row = data["sections"][0]["rows"][1]
    assert row["values"] == [15.0, 9.0] and row["median"] == 12.0 and row["ratio"] == 12.0 / 11.0
    assert data["sections"][0]["baselines"] == ["baseline = what it means"]
    assert "| ours | 12.0 | 9.00–15.0 | MiB/s | 1.09 |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- processes ----------------------------------------------------------------------------

def _http_server_with_a_child(port: int) -> list[str]:
    """A server whose process group holds a second process (as torch's workers would)."""
    return ["sh", "-c", f"sleep 300 & echo $! > child.pid; exec {sys.executable} -m http.server {port} --bind 127.0.0.1"]


def test_a_server_and_its_children_are_stopped_when_the_benchmark_fails(tmp_path):
    port = harness.free_port()
    with pytest.raises(RuntimeError, match="a benchmark failing"), harness.running(
            "toy", _http_server_with_a_child(port), f"http://127.0.0.1:{port}", tmp_path / "toy.log", probe="/",
            cwd=tmp_path, grace=5) as server:
        pid = server.pid
        child = int((tmp_path / "child.pid").read_text())
        assert _alive(pid) and _alive(child)
        raise RuntimeError("a benchmark failing")
    assert _wait_gone(pid) and _wait_gone(child)


def test_servers_die_with_a_harness_killed_outright(tmp_path):
    """SIGKILL leaves the harness no ``finally``: PR_SET_PDEATHSIG stops its servers."""
    port = harness.free_port()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bench import harness\n"
        f"with harness.running('toy', [sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1'],\n"
        f"                     'http://127.0.0.1:{port}', Path('toy.log'), probe='/', cwd=Path('.')) as s:\n"
        "    print(s.pid, flush=True)\n"
        "    time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        server_pid = int(proc.stdout.readline())
        assert _alive(server_pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait_gone(server_pid)
    finally:
        proc.kill()
        proc.wait()


# -- end to end ---------------------------------------------------------------------------

def _bench(tmp_path: Path, *argv: str, timeout: float = 300) -> tuple[str, dict]:
    tag = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-m", "bench", *argv, "--out", str(tmp_path / "results")], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "IPTO_BENCH_TEST_TAG": tag})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    left = _servers(tag)
    assert not left, f"left running: {left}"
    assert "work dir" in done.stdout
    name = argv[0]
    for ext in ("json", "md", "png"):
        assert (tmp_path / "results" / f"{name}.{ext}").stat().st_size > 0
    return done.stdout, json.loads((tmp_path / "results" / f"{name}.json").read_text())


def _rows(data: dict, section: str) -> dict[str, dict]:
    (found,) = [s for s in data["sections"] if s["key"] == section]
    return {r["key"]: r for r in found["rows"]}


def test_the_control_benchmark_runs_the_engine_and_the_ceiling_and_prints_ratios(tmp_path):
    out, data = _bench(tmp_path, "control", "--levels", "1,4", "--seconds", "0.3", "--warmup", "0", "--runs", "1",
                       "--spread", "3")
    rows = _rows(data, "control")
    for c in (1, 4):
        initiate = rows[f"initiate_{c}"]
        assert initiate["baseline"] == f"ceil_post_{c}" and initiate["values"][0] > 0
        assert initiate["ratio"] == pytest.approx(initiate["median"] / rows[f"ceil_post_{c}"]["median"])
        assert not initiate["extra"]["errors"] and not rows[f"cycle_{c}"]["extra"]["errors"]
        assert rows[f"get_{c}"]["baseline"] == f"ceil_get_{c}" and rows[f"get_{c}"]["values"][0] > 0
        for name in ("initiate", "cycle"):  # one dataset by default, and the same load spread over --spread
            spread = rows[f"{name}_spread_{c}"]
            assert spread["values"][0] > 0 and not spread["extra"]["errors"]
            versus = rows[f"{name}_one_vs_spread_{c}"]
            assert versus["ratio"] == pytest.approx(rows[f"{name}_{c}"]["median"] / spread["median"])
    assert "c=4: initiate 1 KiB object, one dataset" in out and "spread over 3" in out and "1.00 (base)" in out


def test_the_metrics_benchmark_compares_an_engine_with_metrics_on_to_one_with_them_off(tmp_path):
    out, data = _bench(tmp_path, "metrics", "--levels", "1", "--seconds", "0.3", "--warmup", "0", "--pairs", "2")
    rows = _rows(data, "metrics")
    for op in ("initiate", "cycle", "get"):
        on, off = rows[f"{op}_1_on"], rows[f"{op}_1_off"]
        assert off["is_baseline"] and on["baseline"] == f"{op}_1_off" and len(on["values"]) == len(off["values"]) == 2
        assert min(on["values"]) > 0 and min(off["values"]) > 0
        assert on["ratio"] == pytest.approx(on["median"] / off["median"])
        cpu_on, cpu_off = rows[f"{op}_1_cpu_on"], rows[f"{op}_1_cpu_off"]  # the engine's CPU per operation, each pair
        assert cpu_on["baseline"] == f"{op}_1_cpu_off" and cpu_on["lower_is_better"] and cpu_on["median"] > 0 < cpu_off["median"]
    assert "paired on ÷ off" in out and "server CPU per operation" in out and "µs" in out


def test_the_upload_benchmark_measures_ours_tus_and_the_machine_on_the_same_bytes(tmp_path):
    out, data = _bench(tmp_path, "upload", "--size-mib", "8", "--files", "4", "--file-mib", "1", "--concurrency", "2",
                       "--small", "20x100KiB,30x3000", "--small-concurrency", "4", "--spread", "3", "--runs", "1")
    rows = _rows(data, "upload")
    assert rows["physical"]["is_baseline"]
    for ours, theirs in (("ours_single", "tus_single"), ("ours_multi", "tus_multi")):
        assert rows[ours]["baseline"] == theirs and rows[ours]["values"][0] > 0 and rows[theirs]["values"][0] > 0
        assert rows[ours]["ratio"] == pytest.approx(rows[ours]["median"] / rows[theirs]["median"])
    assert rows["engine_rss"]["values"][0] > 0 and rows["tus_rss"]["values"][0] > 0
    small = _rows(data, "upload_small")
    for shape in ("20x102400_c4", "30x3000_c4"):  # both sizes, into one dataset and spread, against tus on the same files
        theirs, one, spread = (small[f"small_{shape}_{who}"] for who in ("tus", "one", "spread"))
        assert theirs["is_baseline"] and theirs["values"][0] > 0
        for ours in (one, spread):
            assert ours["baseline"] == theirs["key"] and ours["values"][0] > 0 and not ours["extra"]["errors"]
            assert ours["ratio"] == pytest.approx(ours["median"] / theirs["median"])
        assert small[f"small_{shape}_one_vs_spread"]["ratio"] == pytest.approx(one["median"] / spread["median"])
    assert "20 × 100 KiB, 4 at a time, one dataset" in out and "30 × 3000 B" in out and "÷ tus" in out


def test_the_floor_benchmark_runs_tus_the_floor_servers_and_the_engine_on_the_same_files(tmp_path):
    out, data = _bench(tmp_path, "floor", "--small", "20x100KiB,30x3000", "--small-concurrency", "4", "--runs", "1",
                       "--variants", "asgi:none:1,asgi:durable:2,quart:durable:1@0")
    rows = _rows(data, "floor")
    for shape in ("20x102400_c4", "30x3000_c4"):
        theirs = rows[f"{shape}_tus"]
        assert theirs["is_baseline"] and theirs["values"][0] > 0
        # the durable floors checked every declared SHA-256 (a mismatch is a 409, counted as an error)
        for who in ("asgi_none_p1", "asgi_durable_p2", "quart_durable_p1_cpu0", "engine"):
            ours = rows[f"{shape}_{who}"]
            assert ours["baseline"] == theirs["key"] and ours["values"][0] > 0 and not ours["extra"]["errors"]
            assert ours["ratio"] == pytest.approx(ours["median"] / theirs["median"])
            assert ours["extra"]["cpu_ms_per_file"] > 0
    assert "floor asgi, durable, 2 processes" in out and "1 core(s) (0)" in out and "engine (SQLite, 1 dataset)" in out


def test_the_scale_benchmark_counts_errors_and_server_memory(tmp_path):
    _, data = _bench(tmp_path, "scale", "--ladder", "1,8", "--spread", "4", "--min-uploads", "8", "--object-kib", "64",
                     "--runs", "1")
    (section,) = [s for s in data["sections"] if s["key"] == "scale"]
    throughput = [r for r in section["rows"] if r["unit"] == "objects/s" and not r["is_baseline"] and r["baseline"]]
    assert len(throughput) == 4 and all(r["values"][0] > 0 and r["ratio"] for r in throughput)  # one dataset, spread
    rows = {r["key"]: r for r in section["rows"]}
    assert rows["c8_one_vs_spread"]["ratio"] == pytest.approx(rows["c8"]["median"] / rows["c8_spread"]["median"])
    assert all("errors" in r["extra"] and not r["extra"]["errors"] for r in throughput)
    assert any(r["unit"] == "MiB" and r["values"][0] > 0 for r in section["rows"])
