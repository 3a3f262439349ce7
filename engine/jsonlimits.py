"""Bounds on JSON the engine is given, checked before anything walks it recursively.

orjson parses up to 1,024 levels, but it serialises only 254, and Python-side walks
(jsonschema's meta-schema check among them) run out of stack long before either: a
request body or a schema nested past these limits is refused up front, with an iterative
walk that costs no stack whatever the depth.

A string holding NUL (``\\u0000`` in JSON) is refused too (:func:`nul_paths` finds it):
PostgreSQL's ``text`` and ``jsonb`` cannot store it, so without this check the same body
would be kept on SQLite and be a 500 on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from engine.errors import TooDeep

MAX_BODY_DEPTH = 64      # levels of arrays/objects in any JSON request body
MAX_SCHEMA_DEPTH = 32    # levels of arrays/objects in a record schema
MAX_SCHEMA_BYTES = 128 * 1024  # a record schema, serialised


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects more than ``limit`` levels deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def nul_paths(value: Any) -> Iterator[str]:
    """Where the strings (values, or objects' keys) holding NUL are, as dotted paths
    (``schema.properties.note``, ``files.3.filename``; ``body`` for the top level)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                yield path or "body"
        elif isinstance(node, dict):
            for key, child in node.items():
                at = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    yield at.replace("\x00", "\\u0000")
                else:
                    stack.append((child, at))
        elif isinstance(node, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(node))


def too_deep(field: str, limit: int) -> TooDeep:
    """400 ``too_deep`` naming ``field``."""
    return TooDeep(f"{field} is nested more than {limit} levels deep", {"fields": {field: f"nested more than {limit} levels deep"}})


def check_depth(value: Any, limit: int, field: str) -> None:
    """Raise :class:`TooDeep` (400 ``too_deep``, naming ``field``) past ``limit`` levels."""
    if depth_exceeds(value, limit):
        raise too_deep(field, limit)
