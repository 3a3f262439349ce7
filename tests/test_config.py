"""Configuration: embedded defaults = config/engine.toml, env and flag overrides, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.config import REPO_CONFIG, Config, ConfigError, load_config


def test_embedded_defaults_match_the_shipped_toml():
    from_file = load_config(REPO_CONFIG, env={})
    embedded = Config()
    assert from_file == embedded


def test_api_md_defaults():
    cfg = load_config(env={})
    assert cfg.uploads.url_ttl_seconds == 900
    assert cfg.review.window_seconds == 259200
    assert cfg.blobs.backend == "local"
    assert cfg.store_url.startswith("sqlite:///") and cfg.store_url.endswith("engine.db")


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    env = {"IPTO_REVIEW_WINDOW_SECONDS": "5", "IPTO_HTTP_PORT": "9000", "IPTO_DATA_DIR": str(tmp_path)}
    cfg = load_config(env=env)
    assert cfg.review.window_seconds == 5 and cfg.http.port == 9000 and cfg.data_dir == tmp_path
    cfg = load_config(env=env, overrides={"http.port": 9100, "http.host": None})
    assert cfg.http.port == 9100 and cfg.http.host == "127.0.0.1"


def test_config_is_frozen():
    cfg = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.http.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"IPTO_HTTP_PORT": "eighty"}, "http.port"),
        ({"IPTO_HTTP_PORT": "70000"}, "http.port"),
        ({"IPTO_BLOBS_BACKEND": "floppy"}, "blobs.backend"),
        ({"IPTO_UPLOADS_URL_TTL_SECONDS": "-1"}, "uploads.url_ttl_seconds"),
        ({"IPTO_UPLOADS_PART_SIZE_BYTES": "1024"}, "uploads.part_size_bytes"),
        ({"IPTO_REVIEW_WINDOW": "5"}, "review.window"),
        ({"IPTO_HTTP_WORKERS": "-1"}, "http.workers"),
        ({"IPTO_HTTP_WORKERS": "65"}, "http.workers"),
        ({"IPTO_HTTP_WORKERS": "two"}, "http.workers"),
    ],
)
def test_bad_values_name_the_key(env, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(env=env)


def test_bad_file_is_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[http]\nprot = 1\n")
    with pytest.raises(ConfigError, match="http.prot"):
        load_config(unknown, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Path(tmp_path / "missing.toml"), env={})


def test_public_url_follows_host_and_port():
    cfg = load_config(env={}, overrides={"http.port": 8123})
    assert cfg.public_url == "http://127.0.0.1:8123"
    cfg = load_config(env={"IPTO_HTTP_PUBLIC_URL": "https://api.example.com/"})
    assert cfg.public_url == "https://api.example.com"


def test_workers_zero_means_one_per_core_this_process_may_use(monkeypatch):
    from engine.workers import resolve_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5})
    assert resolve_workers(load_config(env={"IPTO_HTTP_WORKERS": "0"})).http.workers == 3
    assert resolve_workers(load_config(env={"IPTO_HTTP_WORKERS": "2"})).http.workers == 2
    assert load_config(env={}).http.workers == 1
