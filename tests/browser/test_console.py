"""The review console in a real Chromium: sign in, filter, preview, decide by keyboard, bulk
approval, arrivals, and an uploaded object that tries to run script in the admin's browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import trio
from playwright.sync_api import expect

from tests.conftest import Account, make_config
from tests.http.review_helpers import (
    ADMIN,
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    XSS_HTML,
    XSS_NAME,
    XSS_SVG,
    admin_login,
    image_bytes,
    mixed_dataset,
    pdf_bytes,
    stage,
)

PDF_PAGES = ["Invoice 0425 Globex Corporation", "Payment terms: thirty days", "Total due 1,234.00 EUR"]


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


def _sign_in(page, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/console")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#sign-in")


async def _account(client, tenant_name: str) -> Account:
    email = f"{tenant_name.split()[0].lower()}@example.com"
    r = await client.post("/v1/auth/signup", json={"email": email, "password": "correct horse battery", "tenant_name": tenant_name})
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    return Account(data["token"], data["user"]["user_id"], data["tenant"]["tenant_id"], email)


def _row(page, object_id: str):
    return page.locator(f'#rows tr[data-object-id="{object_id}"]')


def _current(page):
    return page.locator("#rows tr.current")


async def test_review_by_keyboard_from_sign_in_to_the_pipeline(client, browse, service, tmp_path):
    """Sign in, filter by modality and tenant, preview a PDF and an image, approve one object
    with ``a`` and reject one with ``r``, and watch the approved object's job start."""
    alice = await _account(client, "Globex Archive")
    bob = await _account(client, "Orchard Co-op")
    scans = await mixed_dataset(client, alice.headers, "Scanned invoices")
    notes = await mixed_dataset(client, bob.headers, "Field notes")
    pdf = await stage(client, alice.headers, scans["dataset_id"], pdf_bytes(PDF_PAGES), "invoice-0425.pdf", "application/pdf")
    png = await stage(client, alice.headers, scans["dataset_id"], image_bytes((320, 200)), "receipt.png", "image/png")
    keep = await stage(client, bob.headers, notes["dataset_id"], b"Harvest of orchard 7 was counted twice.\n", "orchard-7.txt", "text/plain")
    drop = await stage(client, bob.headers, notes["dataset_id"], b"Duplicate of orchard 7.\n", "orchard-7-copy.txt", "text/plain")
    shot = tmp_path / "console.png"

    def scenario(page, log):
        _sign_in(page, ADMIN_EMAIL, "not the password")
        expect(page.locator("#login-error")).to_contain_text("invalid email or password")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("#sign-in")
        expect(page.locator("#who")).to_have_text(ADMIN_EMAIL)
        expect(page.locator("#rows tr")).to_have_count(4)
        # Oldest upload first, each with the time it has left.
        assert page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.objectId)") == [pdf, png, keep, drop]
        expect(_row(page, pdf).locator("td.left")).to_have_text(re.compile(r"^2 d 23 h$|^3 d 0 h$"))
        expect(page.locator("#p-summary")).to_have_text(re.compile(r"^PDF, 3 pages"))  # the first one, previewed
        page.screenshot(path=str(shot))

        page.select_option("#f-modality", "document")
        expect(page.locator("#rows tr")).to_have_count(1)
        expect(_current(page)).to_have_attribute("data-object-id", pdf)
        expect(page.locator("#p-summary")).to_have_text(re.compile(r"^PDF, 3 pages"))
        for line in PDF_PAGES:
            expect(page.locator("#p-text")).to_contain_text(line)

        page.select_option("#f-modality", "image")
        expect(page.locator("#rows tr")).to_have_count(1)
        expect(page.locator("#p-summary")).to_have_text(re.compile(r"^Image, 320 × 200 pixels"))
        image = page.locator("#p-image")
        expect(image).to_be_visible()
        page.wait_for_function("() => { const i = document.getElementById('p-image'); return i.complete && i.naturalWidth === 320; }")

        page.select_option("#f-modality", "")
        page.fill("#f-tenant", bob.tenant_id)
        page.press("#f-tenant", "Enter")
        expect(page.locator("#rows tr")).to_have_count(2)
        page.locator("body").click(position={"x": 5, "y": 5})  # keys go to the page, not the filter box
        expect(_current(page)).to_have_attribute("data-object-id", keep)
        page.keyboard.press("j")
        expect(_current(page)).to_have_attribute("data-object-id", drop)
        page.keyboard.press("k")
        expect(_current(page)).to_have_attribute("data-object-id", keep)
        expect(page.locator("#p-text")).to_have_text("Harvest of orchard 7 was counted twice.\n")

        page.keyboard.press("a")
        decision = page.locator("#decision")
        expect(decision).to_contain_text("Approved orchard-7.txt.")
        expect(decision.locator(".job")).to_have_text(re.compile(r"^job job_\w+: "))
        expect(_row(page, keep).locator(".badge")).to_have_text("approved")
        # The processing job started: it is followed until it has run.
        expect(decision.locator(".job")).to_have_attribute("data-job-status", re.compile("running|succeeded"), timeout=90_000)

        expect(_current(page)).to_have_attribute("data-object-id", drop)  # next one, by itself
        page.keyboard.press("r")
        expect(page.locator("#reason")).to_be_focused()
        page.keyboard.type("duplicate of orchard-7.txt")
        page.keyboard.press("Enter")
        expect(decision).to_contain_text("Rejected orchard-7-copy.txt: duplicate of orchard-7.txt")
        expect(_row(page, drop).locator(".badge")).to_have_text("rejected")
        assert not log.page_errors, log.page_errors

    await browse(service.url, scenario)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("IPTO_CONSOLE_SCREENSHOT"):  # how docs/console.png is made
        shutil.copyfile(shot, Path(os.environ["IPTO_CONSOLE_SCREENSHOT"]))

    await service.services.pipeline.wait_idle()
    kept = (await client.get(f"/v1/objects/{keep}", headers=bob.headers)).json()["data"]
    assert kept["review_state"] == "approved" and kept["status"] == "active"
    dropped = (await client.get(f"/v1/objects/{drop}", headers=bob.headers)).json()["data"]
    assert dropped["review_state"] == "rejected"
    for oid in (pdf, png):  # looking is not deciding
        assert (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]["review_state"] == "staged"


async def test_bulk_approval_and_new_arrivals(client, alice, browse, service):
    ds = await mixed_dataset(client, alice.headers, "Notes")
    ids = [await stage(client, alice.headers, ds["dataset_id"], f"note {i}\n".encode(), f"note-{i}.txt", "text/plain") for i in range(3)]
    arrived: list[str] = []

    admin = await admin_login(client)

    async def reject_elsewhere(object_id: str) -> None:
        r = await client.post(f"/v1/admin/staged-objects/{object_id}/reject", headers=admin, json={"reason": "seen elsewhere"})
        assert r.status_code == 200

    async def upload_one() -> None:
        arrived.append(await stage(client, alice.headers, ds["dataset_id"], b"arrived later\n", "late.txt", "text/plain"))

    def scenario(page, log):
        _sign_in(page)
        expect(page.locator("#rows tr")).to_have_count(3)
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("x")  # the first
        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("x")  # the third
        expect(page.locator("#bulk-approve")).to_have_text("Approve selected (2)")
        page.keyboard.press("Shift+A")
        expect(page.locator("#decision")).to_contain_text("Approved 2 of 2")
        for oid, state in ((ids[0], "approved"), (ids[1], "staged"), (ids[2], "approved")):
            expect(_row(page, oid).locator(".badge")).to_have_text(state)
        # Another admin rejects the second one meanwhile: approving it here shows why it failed.
        trio.from_thread.run(reject_elsewhere, ids[1])
        page.keyboard.press("k")
        expect(_current(page)).to_have_attribute("data-object-id", ids[1])
        page.keyboard.press("a")
        expect(page.locator("#decision")).to_have_text(
            "Could not approve note-1.txt: an object that is rejected cannot become approved (conflict)")
        expect(page.locator("#decision")).to_have_class(re.compile("error"))

        # An object uploaded while the console is open shows up at the end of the list.
        trio.from_thread.run(upload_one)
        expect(page.locator("#rows tr")).to_have_count(4, timeout=20_000)
        expect(page.locator("#arrivals")).to_have_text("1 new object arrived")
        assert page.locator("#rows tr").last.get_attribute("data-object-id") == arrived[0]
        assert not log.page_errors, log.page_errors

    await browse(service.url, scenario)
    await service.services.pipeline.wait_idle()
    states = [(await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]["review_state"] for oid in ids]
    assert states == ["approved", "rejected", "approved"]


async def test_an_object_that_tries_to_run_script_is_shown_as_text(client, alice, browse, service):
    """Markup in a file name and in file bodies (HTML; SVG declared as PNG) is shown as
    text; no script runs; and the page's CSP stops script even if markup got in."""
    ds = await mixed_dataset(client, alice.headers, "Reports")
    html = await stage(client, alice.headers, ds["dataset_id"], XSS_HTML, XSS_NAME, "text/html")
    svg = await stage(client, alice.headers, ds["dataset_id"], XSS_SVG, "logo.png", "image/png")

    def scenario(page, log):
        _sign_in(page)
        expect(page.locator("#rows tr")).to_have_count(2)
        expect(_row(page, html).locator("td.file .name")).to_have_text(XSS_NAME)
        expect(page.locator("#d-name")).to_have_text(XSS_NAME)
        expect(page.locator("#p-text")).to_have_text(XSS_HTML.decode())

        _row(page, svg).click()
        expect(page.locator("#p-problem")).to_contain_text("declared image/png")
        expect(page.locator("#p-text")).to_have_text(XSS_SVG.decode())
        expect(page.locator("#p-image")).to_be_hidden()

        # Nothing the objects carry was ever turned into markup or run.
        assert page.evaluate("() => window.__xss") is None
        assert page.locator('img[src="x"], #detail svg, #detail iframe, #rows img').count() == 0
        assert log.dialogs == []

        # The CSP's second line: were markup ever to reach the page, no string could become
        # markup or script (Trusted Types with no policy), and nothing inline would run.
        attempts = page.evaluate("""() => new Promise(resolve => {
            const seen = [], thrown = {};
            document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
            const attempt = (name, fn) => { try { fn(); thrown[name] = 'ran'; } catch (e) { thrown[name] = e.name; } };
            attempt('innerHTML', () => { document.getElementById('p-summary').innerHTML = '<img src=x onerror="window.__xss=1">'; });
            attempt('handler', () => { const i = document.createElement('img'); i.setAttribute('onerror', 'window.__xss=1'); i.src = '/none'; document.body.append(i); });
            attempt('script', () => { const s = document.createElement('script'); s.src = 'data:text/javascript,window.__xss=1'; document.body.append(s); });
            setTimeout(() => resolve({thrown, seen}), 1000);
        })""")
        assert attempts["thrown"] == {"innerHTML": "TypeError", "handler": "TypeError", "script": "TypeError"}, attempts
        assert attempts["seen"] == ["require-trusted-types-for"] * 3, attempts
        assert page.evaluate("() => window.__xss") is None
        assert log.dialogs == []

    await browse(service.url, scenario)
    for oid in (html, svg):
        assert (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]["review_state"] == "staged"


async def test_tenants_and_logged_out_visitors_only_ever_see_the_login_page(client, alice, browse, service):
    def scenario(page, log):
        page.goto("/console")
        expect(page.locator("#login-form")).to_be_visible()
        assert page.locator("#queue").count() == 0
        _sign_in(page, alice.email, "correct horse battery")
        expect(page.locator("#login-error")).to_have_text("only platform admins may sign in to the review console")
        page.reload()
        expect(page.locator("#login-form")).to_be_visible()
        assert page.context.cookies() == []

        _sign_in(page)
        expect(page.locator("#who")).to_have_text(ADMIN_EMAIL)
        cookie = page.context.cookies()[0]
        assert cookie["name"] == "ipto_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script can read it
        page.click("#logout")
        expect(page.locator("#login-form")).to_be_visible()
        page.goto("/console")
        expect(page.locator("#login-form")).to_be_visible()

    await browse(service.url, scenario)
