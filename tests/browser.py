"""Open built pages in headless Chromium and report what did not render or reached outside."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
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
    # every host name but the loopback fails at once, so an outside request cannot hang a page
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@dataclass
class PageReport:
    """What one page did in the browser."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)
    figures: int = 0
    figures_drawn: int = 0
    token_views: int = 0
    token_views_mounted: int = 0
    math: int = 0
    math_rendered: int = 0
    token_legends: int = 0
    overlaps: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)
    wide: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = [f"console error: {e}" for e in self.console_errors]
        found += [f"request leaving the machine: {u}" for u in self.outside_requests]
        found += [f"failed response: {r}" for r in self.failed_responses]
        if self.figures_drawn < self.figures:
            found.append(f"{self.figures - self.figures_drawn} of {self.figures} plotly figures did not draw")
        if self.token_views_mounted < self.token_views:
            found.append(f"{self.token_views - self.token_views_mounted} of {self.token_views} circuitsvis views did not mount")
        if self.math_rendered < self.math:
            found.append(f"{self.math - self.math_rendered} of {self.math} math blocks were not typeset")
        if self.token_legends < self.token_views:
            found.append(f"{self.token_views - self.token_legends} of {self.token_views} token views have no colour legend")
        found += [f"overlapping text: {o}" for o in self.overlaps]
        found += [f"formula clipped or scrolled: {c}" for c in self.clipped]
        found += [f"table wider than the content column: {w}" for w in self.wide]
        return found


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on a free loopback port from a separate process; yields the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait()


def _record_console(message, report: PageReport) -> None:
    """Record console errors and warnings; failed loads are recorded with their URL by
    ``_record_failed``."""
    if message.type not in ("error", "warning"):
        return
    if message.text.startswith("Failed to load resource"):
        return
    report.console_errors.append(message.text)


def _record_failed(response, report: PageReport) -> None:
    """Record HTTP errors, except the browser's own favicon probe at the server root."""
    if response.status >= 400 and not response.url.endswith("/favicon.ico"):
        report.failed_responses.append(f"{response.status} {response.url}")


def _record_outside(url: str, base_url: str, report: PageReport) -> None:
    """Record a request that is not for the local server (the browser cannot resolve it anyway)."""
    if not url.startswith((base_url, "data:", "blob:", "about:")):
        report.outside_requests.append(url)


CHECK_RENDERING = """() => ({
  figures: document.querySelectorAll('.plotly-graph-div').length,
  figures_drawn: document.querySelectorAll('.plotly-graph-div .main-svg').length > 0
      ? Array.from(document.querySelectorAll('.plotly-graph-div')).filter(d => d.querySelector('.main-svg')).length : 0,
  token_views: document.querySelectorAll('.circuitsvis-view').length,
  token_views_mounted: Array.from(document.querySelectorAll('.circuitsvis-view')).filter(d => d.children.length > 0).length,
  math: document.querySelectorAll('div.math, span.math').length,
  math_rendered: Array.from(document.querySelectorAll('div.math, span.math')).filter(d => d.querySelector('mjx-container')).length,
  token_legends: document.querySelectorAll('.token-legend').length,
})"""

# Layout, measured on the page as drawn: text boxes of one figure that overlap (titles, axis
# titles, tick labels, annotations, legend entries, point labels), display formulas wider than
# their box or the content column, tables wider than the content column.
CHECK_LAYOUT = """() => {
  const shown = (el) => {
    const r = el.getBoundingClientRect(), style = getComputedStyle(el);
    return r.width > 0.5 && r.height > 0.5 && style.visibility !== 'hidden' && style.display !== 'none'
      && parseFloat(style.opacity || '1') > 0 && parseFloat(style.fillOpacity || '1') > 0 && (el.textContent || '').trim().length > 0;
  };
  const overlaps = [];
  document.querySelectorAll('.plotly-graph-div, svg.ns-hist').forEach((figure, f) => {
    const boxes = Array.from(figure.querySelectorAll('text')).filter(shown).map(t => ({t, r: t.getBoundingClientRect()}));
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r, b = boxes[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1 && w * h > 0.1 * Math.min(a.width * a.height, b.width * b.height)) {
          overlaps.push(`figure ${f + 1}: '${boxes[i].t.textContent.trim().slice(0, 40)}' and '${boxes[j].t.textContent.trim().slice(0, 40)}'`);
        }
      }
    }
  });
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = article.getBoundingClientRect();
  const clipped = Array.from(document.querySelectorAll('mjx-container[display="true"]')).filter(m => {
    const r = m.getBoundingClientRect(), inner = (m.firstElementChild || m).getBoundingClientRect();
    return inner.width > r.width + 1 || inner.right > column.right + 1 || m.scrollWidth > m.clientWidth + 1;
  }).map(m => (m.textContent || '').trim().slice(0, 60));
  const wide = Array.from(article.querySelectorAll('table')).filter(t => t.getBoundingClientRect().width > column.width + 1)
    .map(t => `${Math.round(t.getBoundingClientRect().width)} px in ${Math.round(column.width)} px: ${(t.querySelector('caption, th') || t).textContent.trim().slice(0, 50)}`);
  return {overlaps, clipped, wide};
}"""


def check_pages(base_url: str, paths: list[str], screenshot_dir: Path | None = None) -> list[PageReport]:
    """Load each page, wait for it to settle, and collect a report per page."""
    from playwright.sync_api import sync_playwright

    reports = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for path in paths:
            report = PageReport(url=f"{base_url}/{path}")
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg, r=report: _record_console(msg, r))
            page.on("response", lambda response, r=report: _record_failed(response, r))
            page.on("pageerror", lambda exc, r=report: r.console_errors.append(str(exc)))
            page.on("request", lambda request, r=report: _record_outside(request.url, base_url, r))
            page.goto(report.url, wait_until="load", timeout=180_000)
            page.wait_for_timeout(1500)
            for key, value in page.evaluate(CHECK_RENDERING).items():
                setattr(report, key, value)
            for theme in ("light", "dark"):  # at the book's width, in the light theme and in the dark one
                page.evaluate(f"document.documentElement.dataset.theme = '{theme}'; document.documentElement.dataset.mode = '{theme}'")
                page.wait_for_timeout(300)
                for key, found in page.evaluate(CHECK_LAYOUT).items():
                    getattr(report, key).extend(f"{item} ({theme})" for item in found if f"{item} (light)" not in getattr(report, key))
                if screenshot_dir is not None:
                    suffix = "" if theme == "light" else "-dark"
                    page.screenshot(path=str(screenshot_dir / (Path(path).stem + suffix + ".png")), full_page=True)
            page.close()
            reports.append(report)
        browser.close()
    return reports


CHECK_NEURON_BROWSER = """() => {
  const root = document.querySelector('.neuroscope');
  const alpha = (element) => {
    const parts = getComputedStyle(element).backgroundColor.match(/\\(([^)]*)\\)/)[1].split(',');
    return parts.length === 4 ? parseFloat(parts[3]) : 1;
  };
  const tokens = Array.from(root.querySelectorAll('.ns-token'));
  const bars = Array.from(root.querySelectorAll('.ns-hist rect'));
  return {
    title: (root.querySelector('.ns-title') || {}).textContent || '',
    message: (root.querySelector('.ns-message') || {}).textContent || '',
    examples: root.querySelectorAll('ol.ns-examples .ns-example').length,
    tokens: tokens.length,
    coloured: tokens.filter(t => alpha(t) > 0).length,
    focus_alpha: tokens.filter(t => t.classList.contains('ns-focus')).map(alpha),
    bars: bars.length,
    bar_tokens: bars.map(b => parseInt(b.textContent.split(': ')[1].replace(/,/g, ''), 10)).reduce((a, b) => a + b, 0),
    logit_rows: root.querySelectorAll('.ns-logits tr').length - 1,
    notice: (root.querySelector('.ns-notice') || {}).textContent || '',
    bands: root.querySelectorAll('.ns-bands .ns-example').length,
    lowest: root.querySelectorAll('.ns-lowest .ns-example').length,
    neighbours: Array.from(root.querySelectorAll('.ns-links:not(.ns-together) a')).map(a => a.getAttribute('href')),
    together: Array.from(root.querySelectorAll('.ns-together a')).map(a => a.getAttribute('href')),
    sits: Array.from(root.querySelectorAll('.ns-sit a')).map(a => a.textContent),
    writes: Array.from(root.querySelectorAll('.ns-write a')).map(a => a.textContent),
    summary: (root.querySelector('.ns-at') || {}).textContent || '',
    input: (root.querySelector('input') || {}).value || '',
    hash: window.location.hash,
  };
}"""


def browse_neurons(page_url: str, steps: list[tuple[str, str]]) -> dict:
    """Open the neuron browser at ``page_url`` and take ``steps``, each ``("address", text)``
    (the address after '#' set to ``text``) or ``("type", text)`` (typed into the box and
    submitted); after each, read what the browser shows. Returns ``{"states": [...],
    "problems": [...]}`` (script errors and failed requests)."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    states = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
        page.goto(page_url, wait_until="load", timeout=120_000)
        page.wait_for_selector(".neuroscope .ns-title", timeout=30_000)
        for how, text in steps:
            if how == "address":
                page.evaluate(f"window.location.hash = {text!r}")
            else:
                page.fill(".neuroscope input", text)
                page.press(".neuroscope input", "Enter")
            page.wait_for_timeout(600)  # data files load from disk or the server in well under this
            states.append(page.evaluate(CHECK_NEURON_BROWSER))
        browser.close()
    return {"states": states, "problems": problems}


def check_neuron_browser(page_url: str, neuron: str, other: str, screenshot: Path | None = None) -> dict:
    """Open the neuron browser at ``page_url#neuron``, read what it shows, then type ``other``
    into it (another data file loads on demand) and read that too.

    Returns ``{"first": ..., "typed": ..., "problems": [...]}``; a problem is a script error,
    a request that leaves the book (``file://`` from disk, the server otherwise) or a failed one.
    """
    from playwright.sync_api import sync_playwright

    scheme = "file://" if page_url.startswith("file://") else page_url.split("/", 3)[:3]
    home = scheme if isinstance(scheme, str) else "/".join(scheme)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("request", lambda request: None if request.url.startswith((home, "data:", "blob:", "about:")) else problems.append(f"outside request: {request.url}"))
        page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
        page.on("response", lambda response: problems.append(f"{response.status} {response.url}") if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
        page.goto(f"{page_url}#{neuron}", wait_until="load", timeout=120_000)
        page.wait_for_selector(".neuroscope .ns-example", timeout=30_000)
        first = page.evaluate(CHECK_NEURON_BROWSER)
        if screenshot is not None:
            page.locator(".neuroscope").scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
        page.fill(".neuroscope input", other)
        page.press(".neuroscope input", "Enter")
        page.wait_for_function(f"() => (document.querySelector('.ns-title') || {{}}).textContent === {other!r}", timeout=30_000)
        typed = page.evaluate(CHECK_NEURON_BROWSER)
        typed["hash"] = page.evaluate("window.location.hash")
        browser.close()
    return {"first": first, "typed": typed, "problems": problems}
