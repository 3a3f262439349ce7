"""engine/memory.py: the malloc arena limit reaches the processes ``ipto serve`` starts, and
the delivery process stays light (its resident memory counts in the engine's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.memory import cores, limit_malloc_arenas, release_free_memory


def _child_env() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX', ''))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_one_arena_per_core_by_default_and_children_inherit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    expected = max(2, cores())
    assert limit_malloc_arenas() == expected
    assert _child_env() == str(expected)


def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "5")
    assert limit_malloc_arenas() == 5
    assert _child_env() == "5"


def test_a_malformed_setting_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "lots")
    assert limit_malloc_arenas() == max(2, cores())
    release_free_memory()  # harmless at any time


def test_the_delivery_process_does_not_import_the_http_app_or_the_search_libraries() -> None:
    # what engine.webhooks.process's child imports, in a fresh interpreter: the HTTP app
    # (quart, hypercorn) and numpy/usearch cost ~35 MiB of a process that only sends webhooks
    code = (
        "import sys, engine.webhooks.process, trio_asyncio\n"
        "from engine.datadir import load_secret\n"
        "from engine.store import open_store\n"
        "import engine.store.sqlite.store\n"
        "print(' '.join(m for m in ('quart', 'hypercorn', 'numpy', 'usearch', 'werkzeug') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
