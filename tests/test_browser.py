"""The built book in a real browser: every page loads clean in headless Chromium.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and selenium
(the ``test`` extra); skipped with that message otherwise. Builds ``_build/html`` when it is missing
or older than the book's sources, serves it on localhost and, for every page of ``_toc.yml``,
checks: no console errors, every image loaded, math rendered by MathJax (and no raw TeX left),
the Colab launch link pointing at that page's notebook under ``_config.yml``'s repository URL, the
navigation reaching every page, and that nothing in the page's content scrolls sideways (no code
block, output block or table wider than its box). The window is 1280 x 800, the size a reader on a
laptop has at 100 % zoom (the content column is then about 688 px, some 76 characters of code).
Screenshots go to ``_build/screenshots/``, and the blocks that scroll sideways, per page, to
``_build/screenshots/overflow.txt``.
"""
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
WINDOW = (1280, 800)
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
INSTALL = "needs Chromium and chromedriver (apt-get install chromium chromium-driver) and selenium (the test extra)"
pytestmark = pytest.mark.browser

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [entry["file"] for entry in TOC["chapters"]]


def _sources() -> list[Path]:
    """Every file the built site depends on: a newer one triggers a rebuild. The results page is
    executed at build time, so the package (its figures) and the saved benchmark numbers count too."""
    return [ROOT / "_config.yml", ROOT / "_toc.yml", ROOT / "references.bib",
            ROOT / "tools" / "sphinx_dedup_scripts.py", ROOT / "tools" / "sphinx_bib_labels.py",
            ROOT / "book" / "favicon.svg", *(ROOT / "book").iterdir(), *(ROOT / "dctutor").rglob("*.py"),
            *(ROOT / "benchmarks" / "results").glob("*.json")]


@pytest.fixture(scope="module")
def site():
    """The built book served on localhost; yields its base URL."""
    index = HTML / "index.html"
    if not index.exists() or index.stat().st_mtime < max(p.stat().st_mtime for p in _sources()):
        done = subprocess.run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
                               "build", str(ROOT), "--all", "-W", "-n", "--keep-going"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip(f"browser test skipped: {INSTALL}")
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"browser test skipped: {INSTALL}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="dctutor-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_window_size(*WINDOW)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _load(browser, url: str) -> None:
    browser.get(url)
    # Wait for MathJax to typeset (when the page loads it) and for every image to settle.
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const images = Promise.all([...document.images].map(img => img.complete ? null :
            new Promise(r => { img.onload = img.onerror = r; })));
        const math = (window.MathJax && MathJax.startup) ? MathJax.startup.promise : null;
        Promise.all([images, math]).then(() => done(true), () => done(false));
    """)


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_clean_in_chromium(browser, site, page):
    browser.set_script_timeout(60)
    _load(browser, f"{site}/{page}.html")
    browser.save_screenshot(str(SHOTS / f"{Path(page).name}.png"))
    # Every page links the book's favicon (book/favicon.svg, _config.yml's html.favicon), so Chromium
    # no longer asks for a missing /favicon.ico: a 404 for it is a console error like any other.
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors {errors}"
    broken = browser.execute_script(
        "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    assert not broken, f"{page}: images that did not load {broken}"
    has_math = browser.execute_script("return document.querySelectorAll('.math').length")
    if has_math:
        rendered = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        assert rendered >= has_math, f"{page}: {has_math} math elements, {rendered} rendered by MathJax"
    text = browser.execute_script("return document.querySelector('main').innerText")
    assert "$$" not in text and "\\begin{" not in text, f"{page}: raw TeX on the page"
    assert "caron2018deepcluster" not in text, f"{page}: an unresolved citation"
    # Every page links the paper (through its bibliography entry or arXiv).
    links = browser.execute_script("return [...document.querySelectorAll('main a')].map(a => a.href)")
    assert any("1807.05520" in href or "bibliography.html#id" in href for href in links) or \
        page.endswith("bibliography"), f"{page}: no link to the paper"


@pytest.mark.parametrize("page", [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()])
def test_launch_link_opens_this_notebook_in_colab(browser, site, page):
    _load(browser, f"{site}/{page}.html")
    url = CONFIG["repository"]["url"].rstrip("/")
    owner_repo = url.split("github.com/")[1]
    expected = (f"{CONFIG['launch_buttons']['colab_url']}/github/{owner_repo}/blob/"
                f"{CONFIG['repository']['branch']}/{page}.ipynb")
    colab = browser.execute_script(
        "return [...document.querySelectorAll('a')].map(a => a.href).filter(h => h.includes('colab'))")
    assert colab == [expected], f"{page}: Colab launch links {colab}, expected {expected}"


def test_navigation_reaches_every_page(browser, site):
    _load(browser, f"{site}/{PAGES[0]}.html")
    nav = browser.execute_script(
        "return [...document.querySelectorAll('nav.bd-links a, #bd-docs-nav a')].map(a => a.href)")
    for page in PAGES[1:]:
        assert any(href.split("#")[0].endswith(f"/{page}.html") for href in nav), f"{page} is not in the navigation"


# The innermost elements of the page's content that scroll sideways, or that spill past the content
# column (a table, code or output block wider than the column with nothing to scroll it), each with its
# kind, its first 60 characters, its scrollWidth and its clientWidth (the column's, for a spill).
_SIDEWAYS = """
    const root = document.querySelector('article.bd-article') || document.querySelector('main');
    const column = root.getBoundingClientRect().right;
    const found = [], spilled = new Set();
    for (const el of root.querySelectorAll('*')) {
        if (el.clientWidth === 0) continue;
        if (el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)
                && !el.closest('mjx-assistive-mml')) {  // MathJax's copy for screen readers is clipped on purpose
            found.push(el);
        } else if (el.matches('table, pre, .cell_output, .highlight')
                   && el.getBoundingClientRect().right > column + 1) {
            found.push(el);
            spilled.add(el);
        }
    }
    const innermost = found.filter(el => !found.some(other => other !== el && el.contains(other)));
    const kind = el => {
        if (el.closest('mjx-container, .math')) return 'math';
        const table = el.tagName === 'TABLE' || el.querySelector('table');
        if (el.closest('.cell_output, .output')) return table ? 'output table' : 'output';
        if (el.closest('.cell_input')) return 'code';
        if (table) return 'table';
        if (el.closest('pre, .highlight')) return 'code (text)';
        return 'other';
    };
    const rows = innermost.map(el => [kind(el) + (spilled.has(el) ? ' (spills)' : ''),
                                      el.innerText.replace(/\\s+/g, ' ').trim().slice(0, 60),
                                      el.scrollWidth, spilled.has(el) ? root.clientWidth : el.clientWidth]);
    const page = document.scrollingElement;
    if (page.scrollWidth > page.clientWidth + 1)
        rows.push(['page', document.title.slice(0, 60), page.scrollWidth, page.clientWidth]);
    return rows;
"""


@pytest.fixture(scope="module")
def overflow_report():
    """Collects the sideways-scrolling blocks of every page; written to _build/screenshots/overflow.txt."""
    rows: dict[str, list] = {}
    yield rows
    lines = [f"Blocks that scroll sideways at {WINDOW[0]} x {WINDOW[1]} (page, kind, first 60 characters, "
             "scrollWidth/clientWidth px)", ""]
    for page, found in rows.items():
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(Counter(row[0] for row in found).items()))
        lines.append(f"{page}: {len(found)} block(s)" + (f" ({kinds})" if found else ""))
        lines += [f"  {kind:12s} {text!r:64s} {scroll}/{client}" for kind, text, scroll, client in found]
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "overflow.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("page", PAGES)
def test_nothing_scrolls_sideways_at_1280_px(browser, site, page, overflow_report):
    """No code block, output block or table (nor math, nor the page itself) is wider than its box:
    a reader at 1280 px would have to scroll it sideways to read the end of its lines."""
    browser.set_script_timeout(60)
    _load(browser, f"{site}/{page}.html")
    width = browser.execute_script("return window.innerWidth")
    assert width == WINDOW[0], f"the window is {width} px wide, not {WINDOW[0]}"
    found = browser.execute_script(_SIDEWAYS)
    overflow_report[page] = found
    assert not found, f"{page}: {len(found)} block(s) scroll sideways at {WINDOW[0]} px:\n" + "\n".join(
        f"  {kind}: {text!r} ({scroll} px in {client} px)" for kind, text, scroll, client in found)
