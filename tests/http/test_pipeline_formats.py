"""approve → active for every supported format (scans included), with the real extracted text checked in the index."""

from __future__ import annotations

import io

import pytest

from tests.conftest import create_dataset, make_config
from tests.http.test_review import ADMIN
from tests.http.uploads_helpers import upload
from tests.pipeline.conftest import make_pdf, make_scanned_pdf, text_image


def _pdf(tmp_path) -> bytes:
    return make_pdf(tmp_path / "r.pdf", ("Quarterly revenue grew in the northern region.", "Harbour expansion on page two.")).read_bytes()


def _scanned_pdf(tmp_path) -> bytes:
    """An invoice scanned to PDF: one page holding only a picture of its text."""
    return make_scanned_pdf(tmp_path / "scan.pdf").read_bytes()


def _docx(tmp_path) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Shipping manifest", level=1)
    document.add_paragraph("Containers arrive at the harbour every Tuesday.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _png(tmp_path) -> bytes:
    buffer = io.BytesIO()
    text_image(("Harbour invoice 4711", "Paid in full today")).save(buffer, format="PNG")
    return buffer.getvalue()


FORMATS = [
    ("notes.txt", "text/plain", lambda p: b"Plain text notes about the lighthouse keeper.\n", "lighthouse", "lighthouse keeper", False),
    ("readme.md", "text/markdown", lambda p: b"# Title\n\nThe **lighthouse** keeper wrote [this](http://x).\n", "lighthouse", "lighthouse keeper", False),
    ("page.html", "text/html",
     lambda p: b"<html><head><style>.x{}</style><script>var secret=1;</script></head><body><p>Lighthouse keeper log</p></body></html>",
     "lighthouse", "Lighthouse keeper log", False),
    ("report.pdf", "application/pdf", _pdf, "harbour", "Harbour expansion", False),
    ("invoice-scan.pdf", "application/pdf", _scanned_pdf, "facture", "Facture 2025-0425", True),
    ("manifest.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", _docx, "tuesday",
     "arrive at the harbour every Tuesday", False),
    ("scan.png", "image/png", _png, "invoice", "4711", True),
]


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


@pytest.mark.parametrize(("filename", "mime", "make", "query", "expected", "ocr"), FORMATS, ids=[f[0] for f in FORMATS])
async def test_format_reaches_active_with_its_text_indexed(client, alice, service, tmp_path, filename, mime, make, query, expected, ocr):
    login = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
    admin = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    ds = await create_dataset(client, alice.headers)
    up = await upload(client, alice.headers, ds["dataset_id"], make(tmp_path), filename=filename, content_type=mime)
    await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    await service.services.pipeline.wait_idle()

    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "active", obj
    assert obj["artifact_summary"] == {"plain_text": True, "ocr_blocks": ocr, "chunk_embeddings": True}
    store = service.services.store
    hits = await store.search_chunks(alice.tenant_id, ds["dataset_id"], query)
    assert hits and hits[0][0] == up["object_id"]
    assert expected in " ".join(text for _, _, text in hits)
    assert "secret" not in " ".join(text for _, _, text in hits)
    assert await store.count_vectors(up["object_id"]) == len(hits) >= 1
    text = (await service.services.blobs.read_artifact(up["object_id"], "text.txt")).decode()
    assert expected in text
