"""Open built pages in headless Chromium and report what did not render or reached outside."""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageReport:
    """What one page did in the browser."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    figures: int = 0
    figures_drawn: int = 0
    token_views: int = 0
    token_views_mounted: int = 0
    math: int = 0
    math_rendered: int = 0

    @property
    def problems(self) -> list[str]:
        found = [f"console error: {e}" for e in self.console_errors]
        found += [f"request leaving the machine: {u}" for u in self.outside_requests]
        if self.figures_drawn < self.figures:
            found.append(f"{self.figures - self.figures_drawn} of {self.figures} plotly figures did not draw")
        if self.token_views_mounted < self.token_views:
            found.append(f"{self.token_views - self.token_views_mounted} of {self.token_views} circuitsvis views did not mount")
        if self.math_rendered < self.math:
            found.append(f"{self.math - self.math_rendered} of {self.math} math blocks were not typeset")
        return found


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _keep_local(route, request, base_url: str, report: PageReport) -> None:
    """Let requests to the local server through; record and abort anything else."""
    if request.url.startswith((base_url, "data:", "blob:")):
        route.continue_()
    else:
        report.outside_requests.append(request.url)
        route.abort()


CHECK_RENDERING = """() => ({
  figures: document.querySelectorAll('.plotly-graph-div').length,
  figures_drawn: document.querySelectorAll('.plotly-graph-div .main-svg').length > 0
      ? Array.from(document.querySelectorAll('.plotly-graph-div')).filter(d => d.querySelector('.main-svg')).length : 0,
  token_views: document.querySelectorAll('.circuitsvis-view').length,
  token_views_mounted: Array.from(document.querySelectorAll('.circuitsvis-view')).filter(d => d.children.length > 0).length,
  math: document.querySelectorAll('div.math, span.math').length,
  math_rendered: Array.from(document.querySelectorAll('div.math, span.math')).filter(d => d.querySelector('mjx-container')).length,
})"""


def check_pages(base_url: str, paths: list[str], screenshot_dir: Path | None = None) -> list[PageReport]:
    """Load each page, wait for it to settle, and collect a report per page."""
    from playwright.sync_api import sync_playwright

    reports = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for path in paths:
            report = PageReport(url=f"{base_url}/{path}")
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg, r=report: r.console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc, r=report: r.console_errors.append(str(exc)))
            page.route("**/*", functools.partial(_keep_local, base_url=base_url, report=report))
            page.goto(report.url, wait_until="load")
            page.wait_for_timeout(1500)
            for key, value in page.evaluate(CHECK_RENDERING).items():
                setattr(report, key, value)
            if screenshot_dir is not None:
                page.screenshot(path=str(screenshot_dir / (Path(path).stem + ".png")), full_page=True)
            page.close()
            reports.append(report)
        browser.close()
    return reports
