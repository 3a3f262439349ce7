"""Typed, frozen configuration.

Built once at start-up, in this order (later wins):

1. the defaults embedded here (kept identical to ``config/engine.toml`` by a test);
2. a TOML file (``--config`` / ``IPTO_CONFIG``; ``config/engine.toml`` of a source
   checkout is read when present);
3. environment variables ``IPTO_<SECTION>_<KEY>`` (and ``IPTO_DATA_DIR``);
4. explicit overrides, i.e. ``ipto serve`` flags.

A value that cannot be converted to the field's type, or fails its check, raises
:class:`ConfigError` whose message names the key; ``ipto serve`` prints that one line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "load_config", "REPO_CONFIG"]

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "engine.toml"


# A listener on one of these is reachable from this machine only: /metrics may share it.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    max_json_bytes: int = 1048576
    graceful_timeout_seconds: float = 10.0
    backlog: int = 1024
    # Engine processes serving one socket (``ipto serve --workers``); 0: one per CPU core
    # this process may run on. See README "Workers".
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    url: str = ""
    readers: int = 4
    pool_size: int = 10
    command_timeout_seconds: float = 60.0


@dataclasses.dataclass(frozen=True)
class BlobsConfig:
    backend: str = "local"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = "ipto"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_prefix: str = ""
    s3_create_bucket: bool = False


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    session_ttl_seconds: int = 604800
    api_key_touch_interval_seconds: int = 60


@dataclasses.dataclass(frozen=True)
class IdempotencyConfig:
    retention_seconds: int = 86400
    in_progress_timeout_seconds: int = 300


@dataclasses.dataclass(frozen=True)
class UploadsConfig:
    url_ttl_seconds: int = 900
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    part_size_bytes: int = 16 * 1024 * 1024
    max_size_bytes: int = 5 * 1024**4


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    window_seconds: int = 259200
    preview_max_bytes: int = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ActorsConfig:
    inbox_size: int = 64
    idle_seconds: float = 300.0
    ask_timeout_seconds: float = 60.0
    restart_budget: int = 5
    restart_backoff_seconds: float = 0.5
    lease_ttl_seconds: float = 15.0
    scan_seconds: float = 5.0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    workers: int = 2
    max_attempts: int = 3
    retry_backoff_seconds: float = 2.0
    chunk_chars: int = 1000
    chunk_overlap: int = 100
    ocr_engine: str = "rapidocr"
    ocr_threads: int = 1
    ocr_dpi: int = 300
    ocr_max_page_pixels: int = 25_000_000
    ocr_max_pages: int = 50
    ocr_tesseract_lang: str = "eng"
    ocr_timeout_seconds: float = 120.0


@dataclasses.dataclass(frozen=True)
class ImportsConfig:
    max_bytes: int = 10 * 1024**3
    batch_records: int = 2000
    reader_processes: int = 2


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    max_expansions: int = 1000
    max_result_window: int = 1000
    record_flush_seconds: float = 2.0  # engine/market/recorder.py: each commit empties SQLite readers' caches
    max_concurrent_vector: int = 2
    discovery_cache_entries: int = 4096
    ann_min_chunks: int = 300_000  # past this, the HNSW graph answers large vector searches (bench/README.md, Search); 0: off


@dataclasses.dataclass(frozen=True)
class BillingConfig:
    platform_fee_bps: int = 2000
    hold_seconds: int = 1_209_600  # 14 days: the dispute window after a month ends, before its payout
    settle_scan_seconds: float = 5.0  # with several processes: how often the settlement clock re-reads the store


@dataclasses.dataclass(frozen=True)
class WebhooksConfig:
    allow_private_targets: bool = False
    own_process: bool = True  # deliveries in a process of their own, off the serving event loop (bench/README.md)
    timeout_seconds: float = 10.0
    max_response_bytes: int = 65536
    concurrency: int = 64
    per_endpoint_concurrency: int = 4
    poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    disable_after_seconds: int = 259200
    secret_overlap_seconds: int = 86400
    log_retention_seconds: int = 2592000


@dataclasses.dataclass(frozen=True)
class AdminConfig:
    bootstrap_email: str = ""
    bootstrap_password: str = ""


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    bind: str = ""


@dataclasses.dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: Path = Path("ipto-data")
    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    blobs: BlobsConfig = BlobsConfig()
    auth: AuthConfig = AuthConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    uploads: UploadsConfig = UploadsConfig()
    review: ReviewConfig = ReviewConfig()
    actors: ActorsConfig = ActorsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    imports: ImportsConfig = ImportsConfig()
    search: SearchConfig = SearchConfig()
    billing: BillingConfig = BillingConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()

    @property
    def public_url(self) -> str:
        """Base URL clients use to reach this service (presigned URLs point here)."""
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host = self.http.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http.port}"

    @property
    def metrics_where(self) -> str:
        """Where ``GET /metrics`` is served: ``"off"``, ``"main"`` (the API's own listener,
        only when it is a loopback address) or ``"separate"`` (``metrics.bind``)."""
        if not self.metrics.enabled:
            return "off"
        if self.metrics.bind:
            return "separate"
        return "main" if self.http.host in LOOPBACK_HOSTS else "off"

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'engine.db').resolve()}"


_CHOICES: dict[str, tuple[str, ...]] = {
    "blobs.backend": ("local", "s3"),
    "log.level": ("debug", "info", "warning", "error"),
    "log.format": ("auto", "json", "console"),
    "pipeline.ocr_engine": ("rapidocr", "tesseract"),
}
_POSITIVE = {
    "http.max_json_bytes", "store.readers", "store.pool_size", "store.command_timeout_seconds", "auth.session_ttl_seconds",
    "idempotency.retention_seconds", "idempotency.in_progress_timeout_seconds",
    "uploads.url_ttl_seconds", "uploads.multipart_threshold_bytes",
    "uploads.part_size_bytes", "uploads.max_size_bytes", "review.window_seconds", "review.preview_max_bytes",
    "http.graceful_timeout_seconds", "http.backlog", "actors.inbox_size", "actors.idle_seconds", "actors.ask_timeout_seconds",
    "actors.restart_backoff_seconds", "actors.lease_ttl_seconds", "actors.scan_seconds", "pipeline.workers", "pipeline.max_attempts", "pipeline.chunk_chars",
    "pipeline.ocr_threads", "pipeline.ocr_dpi", "pipeline.ocr_max_page_pixels", "pipeline.ocr_max_pages", "pipeline.ocr_timeout_seconds",
    "imports.max_bytes", "imports.batch_records", "imports.reader_processes",
    "search.max_expansions", "search.max_result_window", "search.record_flush_seconds", "billing.settle_scan_seconds",
    "webhooks.timeout_seconds", "webhooks.max_response_bytes", "webhooks.concurrency", "webhooks.per_endpoint_concurrency",
    "webhooks.poll_seconds", "webhooks.lease_seconds", "webhooks.disable_after_seconds", "webhooks.secret_overlap_seconds",
    "webhooks.log_retention_seconds",
    "search.max_concurrent_vector", "search.discovery_cache_entries",
}


# Environment variables of the CLI and client, not of the service's configuration.
_CLIENT_VARIABLES = frozenset({"IPTO_CONFIG", "IPTO_API_KEY", "IPTO_URL", "IPTO_TOKEN", "IPTO_CONFIG_DIR", "IPTO_STATE_DIR"})


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "data_dir"}


def _convert(key: str, typ: Any, raw: Any) -> Any:
    """Convert a TOML or environment value to ``typ``; raise ConfigError naming ``key``."""
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                return raw.lower() in {"1", "true", "yes", "on"}
            raise ValueError
        if typ is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, int):
                return raw
            return int(str(raw).strip().replace("_", ""))
        if typ is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if typ is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw
        if typ is Path:
            if not isinstance(raw, (str, Path)):
                raise ValueError
            return Path(raw)
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"config key {key}: unsupported type")
    expected = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", Path: "a path"}[typ]
    raise ConfigError(f"invalid config value for {key}: expected {expected}, got {raw!r}")


def _check(key: str, value: Any) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"invalid config value for {key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"invalid config value for {key}: must be greater than 0, got {value!r}")
    if key == "imports.batch_records" and value > 65535:
        raise ConfigError("invalid config value for imports.batch_records: at most 65535 records per batch")
    if key == "billing.platform_fee_bps" and not 0 <= value <= 10_000:
        raise ConfigError(f"invalid config value for billing.platform_fee_bps: {value!r} is not 0 to 10000 basis points")
    if key == "metrics.bind" and value and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}", value):
        raise ConfigError(f"invalid config value for metrics.bind: {value!r} is not host:port (or empty)")
    if key == "billing.hold_seconds" and value < 0:
        raise ConfigError(f"invalid config value for billing.hold_seconds: must be 0 or more, got {value!r}")
    if key == "http.workers" and not 0 <= value <= 64:
        raise ConfigError(f"invalid config value for http.workers: {value!r} is not 0 (one per core) to 64")
    if key == "http.port" and not 0 <= value <= 65535:
        raise ConfigError(f"invalid config value for http.port: {value!r} is not a TCP port")
    if key == "uploads.part_size_bytes" and not 5 * 1024**2 <= value <= 5 * 1024**3:
        raise ConfigError("invalid config value for uploads.part_size_bytes: S3 parts are 5 MiB to 5 GiB")
    if key == "uploads.multipart_threshold_bytes" and value > 5 * 1024**3:
        raise ConfigError("invalid config value for uploads.multipart_threshold_bytes: a single S3 PUT holds at most 5 GiB")


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the frozen :class:`Config` (see the module docstring for the order)."""
    env = os.environ if env is None else env
    if path is None and env.get("IPTO_CONFIG"):
        path = Path(env["IPTO_CONFIG"])
    if path is None and REPO_CONFIG.is_file():
        path = REPO_CONFIG
    layered: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for name, value in doc.items():
            if isinstance(value, dict):
                for key, item in value.items():
                    layered[f"{name}.{key}"] = item
            else:
                layered[name] = value

    sections = _sections()
    known = {"data_dir"} | {f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)}
    for key in layered:
        if key not in known:
            raise ConfigError(f"unknown config key {key} in {path}")

    for var, raw in env.items():
        if not var.startswith("IPTO_") or var in _CLIENT_VARIABLES:
            continue
        if var == "IPTO_DATA_DIR":
            layered["data_dir"] = raw
            continue
        rest = var[len("IPTO_"):].lower()
        section, _, key = rest.partition("_")
        if section in sections and f"{section}.{key}" in known:
            layered[f"{section}.{key}"] = raw
        elif section in sections:
            raise ConfigError(f"unknown config key {section}.{key} (from environment variable {var})")

    for key, value in (overrides or {}).items():
        if key not in known:
            raise ConfigError(f"unknown config key {key}")
        if value is not None:
            layered[key] = value

    data_dir = _convert("data_dir", Path, layered.get("data_dir", Config.data_dir))
    built: dict[str, Any] = {"data_dir": data_dir}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            if key in layered:
                value = _convert(key, hints[f.name], layered[key])
                _check(key, value)
                values[f.name] = value
        built[section] = cls(**values)
    return Config(**built)


def as_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain data (``data_dir`` as str), for logging and tests."""
    out = dataclasses.asdict(cfg)
    out["data_dir"] = str(cfg.data_dir)
    if out["blobs"]["s3_secret_key"]:
        out["blobs"]["s3_secret_key"] = "***"
    out["store"]["url"] = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", out["store"]["url"])
    return out

