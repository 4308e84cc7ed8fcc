"""A real headless browser for the report pages: Debian's chromium (installed here when missing, like the SLURM
packages), driven by Playwright's Python client (no browser download)."""
from __future__ import annotations

import os
import shutil

from tests.apt import apt_install

CHROMIUM = "/usr/bin/chromium"


def install() -> str | None:
    """Install Debian's chromium if missing; the reason it cannot be had, or None."""
    return apt_install(["chromium"], lambda: bool(shutil.which("chromium") or os.path.exists(CHROMIUM)))


def open_page(path: str, screenshot: str) -> dict:
    """Load a local page; return the URLs it requested, each image's naturalWidth, its text, the absolute URLs of its
    links, and write a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"file://{os.path.abspath(path)}")
            page.wait_for_load_state("load")
            widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")
            text = page.inner_text("body")
            links = page.evaluate("[...document.links].map(a => a.href)")
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return {"requests": requests, "image_widths": widths, "text": text, "links": links}
