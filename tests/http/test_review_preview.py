"""Previews of staged objects for admins: what the bytes are, shown safely, without deciding anything."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import error_of, make_config
from tests.http.review_helpers import (
    ADMIN,
    QUEUE,
    XSS_HTML,
    XSS_NAME,
    XSS_SVG,
    admin_login,
    image_bytes,
    mixed_dataset,
    pdf_bytes,
    stage,
)


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


@pytest.fixture(name="admin")
async def _admin(client):
    return await admin_login(client)


@pytest.fixture(name="ds")
async def _ds(client, alice):
    return (await mixed_dataset(client, alice.headers))["dataset_id"]


async def _preview(client, admin, oid):
    r = await client.get(f"{QUEUE}/{oid}/preview", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_a_pdf_shows_its_page_count_and_text(client, admin, alice, ds):
    oid = await stage(client, alice.headers, ds, pdf_bytes(["Invoice 0425 Globex", "Second page terms", "Third page totals"]), "inv.pdf", "application/pdf")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "pdf" and p["page_count"] == 3 and p["detected_type"] == "application/pdf" and p["problem"] is None
    assert "Invoice 0425 Globex" in p["text"] and "Third page totals" in p["text"] and p["truncated"] is False
    assert p["image_url"] is None


async def test_an_image_is_shown_as_pixels_re_encoded(client, admin, alice, ds):
    png = await stage(client, alice.headers, ds, image_bytes((64, 32)), "scan.png", "image/png")
    p = await _preview(client, admin, png)
    assert p["kind"] == "image" and (p["width"], p["height"]) == (64, 32) and p["detected_type"] == "image/png"
    assert p["image_url"] == f"/v1/admin/staged-objects/{png}/preview/image"
    r = await client.get(p["image_url"], headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"  # it has transparency: PNG keeps it
    assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert r.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (64, 32) and img.getpixel((20, 12))[3] == 128

    big = await stage(client, alice.headers, ds, image_bytes((3200, 1000), "JPEG", "RGB"), "photo.jpg", "image/jpeg")
    r = await client.get(f"{QUEUE}/{big}/preview/image", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (1600, 500)  # at most 1600 pixels a side


async def test_html_is_shown_as_its_source_text(client, admin, alice, ds):
    oid = await stage(client, alice.headers, ds, XSS_HTML, XSS_NAME, "text/html")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "text" and p["text"] == XSS_HTML.decode() and p["problem"] is None
    assert (await client.get(f"{QUEUE}/{oid}/preview/image", headers=admin)).status_code == 404
    queue = (await client.get(QUEUE, headers=admin)).json()["data"]["objects"]
    assert queue[0]["original_filename"] == XSS_NAME  # kept as sent; the console shows it as text


async def test_svg_declared_as_png_is_text_with_the_mismatch_named(client, admin, alice, ds):
    oid = await stage(client, alice.headers, ds, XSS_SVG, "logo.png", "image/png")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "text" and p["text"].startswith("<svg") and p["image_url"] is None
    assert "declared image/png" in p["problem"]
    r = await client.get(f"{QUEUE}/{oid}/preview/image", headers=admin)
    assert r.status_code == 404 and "not a raster image" in error_of(r)["message"]


async def test_a_docx_shows_its_text(client, admin, alice, ds):
    import docx

    document = docx.Document()
    document.add_paragraph("Vendor agreement between Globex and Initech")
    out = io.BytesIO()
    document.save(out)
    oid = await stage(client, alice.headers, ds, out.getvalue(), "contract.docx",
                      "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "document" and "Vendor agreement between Globex and Initech" in p["text"]


async def test_binary_data_and_lies_get_no_preview_but_a_reason(client, admin, alice, ds):
    junk = bytes(range(256)) * 8
    oid = await stage(client, alice.headers, ds, junk, "notes.txt", "text/plain")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "none" and p["text"] is None and "not UTF-8 text" in p["problem"]
    fake = await stage(client, alice.headers, ds, b"%PDF-1.7 this is no PDF at all", "x.pdf", "application/pdf")
    p = await _preview(client, admin, fake)
    assert p["kind"] == "none" and "corrupt PDF" in p["problem"]


async def test_long_text_is_cut(client, admin, alice, ds):
    from engine.preview import TEXT_CHARS

    oid = await stage(client, alice.headers, ds, b"word " * (TEXT_CHARS // 2), "long.txt", "text/plain")
    p = await _preview(client, admin, oid)
    assert p["kind"] == "text" and len(p["text"]) == TEXT_CHARS and p["truncated"] is True


async def test_a_preview_changes_nothing_and_purged_objects_have_none(client, admin, alice, ds, service):
    oid = await stage(client, alice.headers, ds, b"plain words\n", "a.txt", "text/plain")
    await _preview(client, admin, oid)
    obj = (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]
    assert obj["review_state"] == "staged"  # looking is not claiming
    assert (await client.post(f"{QUEUE}/{oid}/reject", headers=admin, json={"reason": "spam"})).status_code == 200
    p = await _preview(client, admin, oid)
    assert p["kind"] == "none" and "purged" in p["problem"]
    assert (await client.get(f"{QUEUE}/obj_missing/preview", headers=admin)).status_code == 404

    big = await stage(client, alice.headers, ds, image_bytes((40, 40)), "big.png", "image/png")
    service.services.review.preview_max_bytes = 100
    p = await _preview(client, admin, big)
    assert p["kind"] == "none" and "too large to preview" in p["problem"]
    assert (await client.get(f"{QUEUE}/{big}/preview/image", headers=admin)).status_code == 404
