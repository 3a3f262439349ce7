"""The embedded store: SQLite in WAL mode in the data dir (``SqliteStore`` in ``store``).

``store`` holds the connection handling, group commit and the identity and dataset tables;
``objects``, ``pipeline`` and ``imports`` are mixins with the rest, one per area, as in
the PostgreSQL package beside it. Migrations are the numbered files in ``migrations/``.
"""
