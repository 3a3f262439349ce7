"""Files and fixtures for the review console's tests: real PDFs, images, and an admin."""

from __future__ import annotations

import io
from typing import Any

import httpx

from tests.conftest import create_dataset
from tests.http.uploads_helpers import upload

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "admin password"
ADMIN = {"admin.bootstrap_email": ADMIN_EMAIL, "admin.bootstrap_password": ADMIN_PASSWORD}
QUEUE = "/v1/admin/staged-objects"


def pdf_bytes(pages: list[str]) -> bytes:
    """A real PDF with one line of text on each page (fpdf2)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=14)
    for text in pages:
        pdf.add_page()
        pdf.cell(0, 10, text)
    return bytes(pdf.output())


def image_bytes(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGBA") -> bytes:
    """A real image: a colour gradient with a half-transparent square (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new(mode, size, (40, 90, 200, 255) if mode == "RGBA" else (40, 90, 200))
    draw = ImageDraw.Draw(img)
    draw.rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(250, 200, 30, 128) if mode == "RGBA" else (250, 200, 30))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


# An object that tries: markup in its name and body, script in every form a browser runs.
XSS_NAME = '"><img src=x onerror="window.__xss=1">.html'
XSS_HTML = (
    b"<!doctype html><html><body><h1>Quarterly report</h1>"
    b"<script>window.__xss = 1; alert('xss')</script>"
    b"<img src=x onerror=\"window.__xss=1\"><svg onload=\"window.__xss=1\"></svg>"
    b"<iframe src=\"javascript:window.__xss=1\"></iframe></body></html>\n"
)
XSS_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=1">'
    b"<script>window.__xss=1</script><circle r=\"40\"/></svg>\n"
)


async def admin_login(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


async def mixed_dataset(client: httpx.AsyncClient, headers: dict[str, str], name: str = "Mixed") -> dict[str, Any]:
    return await create_dataset(client, headers, name=name, source_modality="mixed")


async def stage(client: httpx.AsyncClient, headers: dict[str, str], dataset_id: str, data: bytes, filename: str, content_type: str) -> str:
    """Upload and confirm one object; its id."""
    up = await upload(client, headers, dataset_id, data, filename=filename, content_type=content_type)
    return str(up["object_id"])
