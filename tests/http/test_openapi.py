"""``GET /v1/openapi.json`` describes every route the app serves (and only those), is a
valid OpenAPI 3.1 document, and is built from the same declarations the server validates
with; ``GET /docs`` reads it with assets the engine serves itself."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from engine.auth import ALL_SCOPES
from engine.http.app import create_app
from engine.http.routes import RouteSpec
from tests.conformance import Conformance, undocumented_objects

METHODS = {"get", "put", "post", "delete", "patch"}


async def document(client) -> dict:
    r = await client.get("/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    return r.json()


async def test_the_document_is_valid_openapi_3_1(client):
    doc = await document(client)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # openapi-spec-validator: raises on any violation of the 3.1 schema


async def test_every_route_of_the_app_is_in_the_document_and_nothing_else(client, service):
    """Compared against Quart's URL map of the running app: a new route without a
    declaration (or a declaration the app does not serve) fails here."""
    doc = await document(client)
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}
    app = create_app(service.services)  # the app the service serves, built the same way
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue  # Quart's own static folder route: the engine has no static folder
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method, path))
    assert served - documented == set(), "routes the document lacks"
    assert documented - served == set(), "documented routes the app does not serve"
    assert len(served) >= 50


async def test_operations_carry_auth_scope_errors_and_schemas(client):
    doc = await document(client)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    create = doc["paths"]["/v1/datasets"]["post"]
    assert create["x-required-scope"] == "datasets:write" and "datasets:write" in create["description"]
    assert {"bearer": []} in create["security"] and {"apiKey": []} in create["security"]
    assert set(create["responses"]) >= {"201", "400", "401", "403", "413", "default"}
    assert create["responses"]["400"] == {"$ref": "#/components/responses/E400"}
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/DatasetCreate"}
    body = doc["components"]["schemas"]["DatasetCreate"]
    assert body["required"] == ["name"] and body["additionalProperties"] is False  # unknown fields are refused
    assert body["properties"]["visibility"]["enum"] == ["private", "restricted", "listed"]
    assert body["properties"]["price_micros"]["minimum"] == 0
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    listing = doc["paths"]["/v1/datasets"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert "archived" in params["status"]["schema"]["enum"]
    data = listing["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
    assert set(data["required"]) == {"datasets", "next_cursor", "has_more", "total"}
    assert doc["paths"]["/v1/health"]["get"]["security"] == []
    assert doc["paths"]["/v1/auth/signup"]["post"]["security"] == []
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message", "details"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "default" in op["responses"], (method, path)
            scope = op.get("x-required-scope")
            assert scope is None or scope in ALL_SCOPES, (method, path)
            if op["security"]:
                assert {"bearer": []} in op["security"] and {"apiKey": []} in op["security"], (method, path)


async def test_the_document_is_built_from_the_validating_declarations(client, alice):
    """Change nothing but a route's declaration and both the answer and the document change:
    a field the document says is an enum is refused by the server with those values named."""
    doc = await document(client)
    enum = doc["components"]["schemas"]["DatasetCreate"]["properties"]["monetization_mode"]["enum"]
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x", "monetization_mode": "gratis"})
    assert r.status_code == 400
    assert r.json()["error"]["details"]["fields"]["monetization_mode"] == f"must be one of {', '.join(enum)}"
    limit = {p["name"]: p for p in doc["paths"]["/v1/datasets"]["get"]["parameters"]}["limit"]["schema"]
    r = await client.get("/v1/datasets", headers=alice.headers, params={"limit": limit["maximum"] + 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_a_route_spec_is_attached_to_every_declared_view():
    from engine.http import datasets

    spec = datasets.create_dataset.api_spec
    assert isinstance(spec, RouteSpec) and spec.body is datasets.CREATE and spec.scope == "datasets:write"


async def test_docs_page_is_served_with_its_own_assets_and_no_cdn(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    page = r.text
    assert "http://" not in page and "https://" not in page and "//" not in page.replace("<!doctype", "")
    assets = re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page)
    assert {"/docs/static/swagger-ui.css", "/docs/static/swagger-ui-bundle.js", "/docs/static/init.js"} <= set(assets)
    for asset in assets:
        a = await client.get(asset)
        assert a.status_code == 200, asset
        assert len(a.content) > 0
    init = (await client.get("/docs/static/init.js")).text
    assert '"/v1/openapi.json"' in init
    bundle = await client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in bundle.content
    assert (await client.get("/docs/static/nope.js")).status_code == 404
    assert (await client.get("/docs/static/..%2Fpyproject.toml")).status_code == 404


async def test_every_answer_is_described_field_by_field(client):
    """No object in a response schema is left as just "an object": each lists its fields
    (types, required, nullable, enums) or says its keys are data (additionalProperties)."""
    doc = await document(client)
    bodies = {op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
              for item in doc["paths"].values() for op in item.values() if "requestBody" in op}
    found = undocumented_objects({k: v for k, v in doc["components"]["schemas"].items() if k not in bodies}, "#/components/schemas")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    found += undocumented_objects(content["schema"], f"{method.upper()} {path} {status} {media}")
    assert found == []
    schemas = doc["components"]["schemas"]
    assert schemas["Payout"]["properties"]["status"]["enum"] == ["open", "pending", "released"]
    assert schemas["Dispute"]["properties"]["status"]["enum"] == ["open", "refunded", "rejected"]
    assert "payout.pending" in schemas["Webhook"]["properties"]["events"]["items"]["enum"]
    assert schemas["WebhookDelivery"]["properties"]["last_status_code"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    spend = doc["paths"]["/v1/agent/spend"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(spend["properties"]["data"]["required"]) >= {"currency", "total_micros", "refunds_micros", "groups"}


async def test_the_closed_document_refuses_what_it_does_not_describe(client):
    """The check the route tests' client runs on every answer (tests/conformance.py)."""
    check = Conformance(await document(client))
    hook = {"webhook_id": "wh_x", "url": "https://example.com/h", "events": ["*"], "description": None, "status": "enabled",
            "disabled_reason": None, "failing_since": None, "previous_secret_expires_at": None,
            "created_at": "2026-12-03T10:00:00Z", "updated_at": "2026-12-03T10:00:00Z"}

    def problems(data: dict) -> list[str]:
        body = {"data": data, "request_id": "req_x", "timestamp": "2026-12-03T10:00:00Z"}
        return check.problems("GET", "/v1/webhooks/wh_x", 200, "application/json", body)

    assert problems(hook) == []
    assert any("'secret' was unexpected" in p for p in problems({**hook, "secret": "whsec_x"}))  # only on create/rotate
    assert any("'url' is a required property" in p for p in problems({k: v for k, v in hook.items() if k != "url"}))
    assert any("'paused' is not one of" in p for p in problems({**hook, "status": "paused"}))
    assert any("is not valid under any of the given schemas" in p for p in problems({**hook, "failing_since": 5}))
    assert any("date-time" in p for p in problems({**hook, "created_at": "yesterday"}))
    error = {"error": {"code": "not_found", "message": "no such webhook", "details": None}, "request_id": "req_x",
             "timestamp": "2026-12-03T10:00:00Z"}
    assert check.problems("GET", "/v1/webhooks/wh_x", 404, "application/json", error) == []
    assert check.problems("GET", "/v1/webhooks/wh_x", 404, "application/json", {"error": "nope"}) != []
