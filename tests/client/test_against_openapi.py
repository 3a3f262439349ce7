"""The client, the CLI and the OpenAPI document never drift apart.

Every HTTP call the Python client makes (``self.call``/``send``/``page``/``iterate`` in
``engine/client``) is read from its source, with its method and path template, and must be
an operation of the document the server generates; the blocking ``Client`` only forwards
to ``AsyncClient``; and the CLI never speaks HTTP to the API itself, only through the client.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import engine
from engine.client import AsyncClient, Client
from engine.config import load_config
from engine.http.app import create_app
from engine.http.openapi import build_document

PACKAGE = Path(engine.__file__).parent
CALLERS = {"call": None, "send": None, "page": "GET", "iterate": "GET"}  # helper -> fixed method (None: first argument)


def _template(node: ast.expr, names: dict[str, ast.expr]) -> str | None:
    """A path argument as a template (``/v1/datasets/{}``), or None when it is not a literal."""
    if isinstance(node, ast.Name) and node.id in names:
        return _template(names[node.id], names)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def client_calls() -> dict[str, set[tuple[str, str]]]:
    """``{"AsyncClient.method": {(HTTP method, path template), ...}}`` from the client's source."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((PACKAGE / "client").glob("*.py")):
        tree = ast.parse(path.read_text())
        for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
            for fn in [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
                names = {t.id: a.value for a in ast.walk(fn) if isinstance(a, ast.Assign)
                         for t in a.targets if isinstance(t, ast.Name)}
                for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call)]:
                    func = call.func
                    if not (isinstance(func, ast.Attribute) and func.attr in CALLERS and isinstance(func.value, ast.Name)
                            and func.value.id == "self"):
                        continue
                    fixed = CALLERS[func.attr]
                    args = call.args if fixed else call.args[1:]
                    method = fixed or (call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None)
                    template = _template(args[0], names) if args else None
                    if method is None or template is None:
                        continue  # the helpers' own definitions pass their arguments on
                    found.setdefault(f"{cls.name}.{fn.name}", set()).add((method, template))
    return found


@pytest.fixture(name="operations", scope="module")
def _operations() -> set[tuple[str, re.Pattern[str]]]:
    app = create_app(SimpleNamespace(cfg=load_config(env={}), metrics=None))  # the routes, no service needed
    doc = build_document(app)
    return {(method.upper(), re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", path) + "$"))
            for path, item in doc["paths"].items() for method in item}


def test_the_client_source_is_read(operations):
    calls = client_calls()
    assert len(calls) >= 40, sorted(calls)  # the reader found the client's calls (not a vacuous pass)
    assert ("POST", "/v1/datasets") in calls["AsyncClient.create_dataset"]
    assert ("GET", "/v1/datasets/{}/objects") in calls["AsyncClient.list_objects"]


def test_every_client_call_is_an_operation_of_the_document(operations):
    missing = []
    for method_name, calls in sorted(client_calls().items()):
        for method, template in sorted(calls):
            concrete = template.replace("{}", "x1")
            if not any(m == method and pattern.match(concrete) for m, pattern in operations):
                missing.append(f"{method_name}: {method} {template}")
    assert missing == [], "client calls the document lacks"


def test_a_call_the_document_lacks_would_be_caught(operations):
    """The matcher is not lenient: a wrong method or path is reported."""
    assert not any(m == "DELETE" and p.match("/v1/health") for m, p in operations)
    assert not any(m == "GET" and p.match("/v1/datasets/x1/nothing") for m, p in operations)


def test_the_blocking_client_only_forwards_to_the_async_one():
    public = {name for name in dir(Client) if not name.startswith("_") and callable(getattr(Client, name))}
    own = {"close"}  # the portal's life, not an API call
    assert public - own <= set(dir(AsyncClient)), sorted(public - own - set(dir(AsyncClient)))


def test_the_cli_speaks_to_the_api_only_through_the_client():
    """No ``/v1/`` path and no HTTP library in the CLI: every command goes through the
    client, whose calls are checked above."""
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [s for s in literals if s.startswith("/v1/")], path.name
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                    for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
        assert not imported & {"httpx", "requests", "urllib3"}, path.name
