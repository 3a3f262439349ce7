"""The production store: PostgreSQL through asyncpg inside Trio (``PgStore`` in ``store``).

``access`` translates driver errors and bridges asyncpg's asyncio into Trio; ``objects``,
``pipeline`` and ``imports`` are mixins, one per area, as in the SQLite package beside it.
Migrations are the numbered files in ``migrations/``, applied under an advisory lock.
"""
