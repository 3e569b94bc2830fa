"""`daer serve` in a real browser: headless Chromium (Debian's package) driven by Playwright.

Starts the command as a user would, on a free local port, opens the page, types a query and
waits for the result cards. `.ci/run` installs the `chromium` package; Playwright's own
browser download is never used (it needs the network), so the test launches
``/usr/bin/chromium`` by path. Set ``DAER_SCREENSHOT=path.png`` to keep a screenshot.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DAER_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-extensions"]

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="the search extra (playwright) is not installed")
if not Path(CHROMIUM).exists():  # .ci/run installs it; a bare developer machine may not have it
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(search_run, built_index):
    port = free_port()
    daer = shutil.which("daer", path=str(Path(sys.executable).parent)) or "daer"
    proc = subprocess.Popen([daer, "serve", str(search_run), "--index", str(built_index),
                             "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"daer serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("daer serve did not answer /api/health within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_page_shows_result_cards_for_a_typed_query(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(server + "/")
            page.wait_for_function(
                "document.getElementById('model-card').textContent.includes('images')")
            assert "daer" in page.locator("#model-card").inner_text()
            page.select_option("#k", "5")
            page.fill("#query", "a large red circle left of a small blue square")
            page.click("#text-submit")
            page.wait_for_selector(".result-card", timeout=60_000)
            cards = page.locator(".result-card")
            assert cards.count() == 5
            first = cards.first
            assert first.locator("img").count() == 1
            page.wait_for_function(
                "[...document.querySelectorAll('.result-card img')].every(i => i.complete"
                " && i.naturalWidth > 0)", timeout=60_000)
            assert first.locator(".score").inner_text().startswith("#1")
            assert first.locator(".labels span").count() >= 1
            assert "re-ranked" in page.locator("#status").inner_text() or \
                "scored" in page.locator("#status").inner_text()
            # an empty query is refused on the page itself, with a message
            page.fill("#query", "  ")
            page.click("#text-submit")
            assert "empty" in page.locator("#error").inner_text()
            shot = os.environ.get("DAER_SCREENSHOT")
            if shot:
                page.fill("#query", "a large red circle left of a small blue square")
                page.click("#text-submit")
                page.wait_for_selector("#error[hidden]", state="attached")
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
