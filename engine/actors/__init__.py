"""Per-dataset actors and the supervisor that owns them."""
