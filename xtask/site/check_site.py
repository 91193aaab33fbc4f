#!/usr/bin/env python3
"""Opens every HTML page of a built site in headless Chromium and checks what a reader sees.

For each page, on the DOM Chromium rendered (scripts run):
  - it has a non-empty <title> and a <main> element with text in it;
  - no R error shows: example or chunk output of class "r-err", or knitr's "Quitting from
    lines";
  - no uncaught JavaScript error and no failed resource load in the console;
  - nothing loads from outside the site (script, stylesheet, image, frame): the site is read
    offline; external links (<a href>) are fine;
  - every internal link and resource resolves to a file of the site, and a #fragment that
    points into an HTML page names an element id (or <a name>) of that page as rendered.
And for the site: every page is reachable by links from index.html (404.html excepted).

Screenshots of the home page and one article are written with --screenshots DIR.

Usage: check_site.py SITE_DIR [--screenshots DIR] [--chromium PATH] [--jobs N]
Exit status 0 when every check passes, 1 when any fails (each problem is listed with its
page), 2 when Chromium cannot be found or run.

Python 3 standard library only.
"""

import argparse
import concurrent.futures
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

# Seconds one Chromium run (one page) may take before it is killed; it is tried twice.
TIMEOUT = 60

CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root, and no user namespaces in containers
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--enable-logging=stderr",
    "--log-level=0",  # console messages reach stderr as INFO:CONSOLE lines
)

# Elements whose URL attribute the browser loads while rendering the page.
RESOURCE_ATTRS = {
    "script": "src",
    "img": "src",
    "iframe": "src",
    "frame": "src",
    "embed": "src",
    "source": "src",
    "track": "src",
    "audio": "src",
    "video": "src",
    "object": "data",
}
LOADED_LINK_RELS = {"stylesheet", "icon", "preload", "modulepreload", "manifest", "apple-touch-icon"}

ERROR_SIGNATURES = ("Quitting from lines",)

CONSOLE_RE = re.compile(r':CONSOLE(?:\(\d+\)|:\d+)?\] "(.*)", source: (.*)$')
CONSOLE_PROBLEMS = ("Uncaught", "Failed to load resource", "Refused to", "Not allowed to load")

# Pages that no link needs to reach.
UNLINKED_OK = {"404.html"}


class ChromiumError(Exception):
    pass


class Page:
    """What the checks need from one rendered page."""

    def __init__(self):
        self.title = ""
        self.main_text = ""
        self.has_main = False
        self.ids = set()
        # (tag, attribute, url, loaded): loaded is True for resources the browser fetches.
        self.urls = []
        self.r_errors = []
        self.text = ""


class _Parser(HTMLParser):
    VOID = {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr",
    }

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack = []  # open elements: (tag, in_title, in_main, in_r_err)
        self.texts = []
        self.r_err = None

    def _state(self):
        return self.stack[-1][1:] if self.stack else (False, False, False)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        p = self.page
        for key in ("id",) + (("name",) if tag == "a" else ()):
            if a.get(key):
                p.ids.add(a[key])
        if tag in ("a", "area") and a.get("href") is not None:
            p.urls.append((tag, "href", a["href"], False))
        elif tag == "link" and a.get("href") is not None:
            rels = set((a.get("rel") or "").lower().split())
            p.urls.append((tag, "href", a["href"], bool(rels & LOADED_LINK_RELS)))
        attr = RESOURCE_ATTRS.get(tag)
        if attr and a.get(attr) is not None:
            p.urls.append((tag, attr, a[attr], True))
        in_title, in_main, in_err = self._state()
        in_title = in_title or tag == "title"
        if tag == "main":
            p.has_main = True
            in_main = True
        classes = (a.get("class") or "").split()
        if "r-err" in classes and not in_err:
            in_err = True
            self.r_err = []
        if tag not in self.VOID:
            self.stack.append((tag, in_title, in_main, in_err))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        # Pop to the matching element (tolerates unclosed children).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                was_err = self.stack[i][3]
                del self.stack[i:]
                if was_err and not self._state()[2] and self.r_err is not None:
                    self.page.r_errors.append(" ".join("".join(self.r_err).split()))
                    self.r_err = None
                return

    def handle_data(self, data):
        in_title, in_main, in_err = self._state()
        if in_title:
            self.page.title += data
        if in_main:
            self.page.main_text += data
        if in_err and self.r_err is not None:
            self.r_err.append(data)
        self.texts.append(data)


def parse_page(html):
    page = Page()
    parser = _Parser(page)
    parser.feed(html)
    parser.close()
    page.title = " ".join(page.title.split())
    page.main_text = " ".join(page.main_text.split())
    page.text = "".join(parser.texts)
    return page


def console_problems(stderr):
    """The console messages in Chromium's log that mean the page did not work."""
    out = []
    for line in stderr.splitlines():
        m = CONSOLE_RE.search(line)
        if m and any(p in m.group(1) for p in CONSOLE_PROBLEMS):
            out.append(f"{m.group(1)} ({m.group(2)})")
    return out


def find_chromium(explicit=None):
    if explicit:
        return explicit
    env = os.environ.get("STARBURST_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumError(
        "no headless Chromium found (looked for %s); install Debian's chromium-headless-shell"
        % ", ".join(CHROMIUM_NAMES)
    )


class Chromium:
    """One headless Chromium process per call, each with its own temporary profile."""

    def __init__(self, binary, timeout=TIMEOUT):
        self.binary = binary
        self.timeout = timeout

    def _run(self, args):
        last = None
        for _ in range(2):
            with tempfile.TemporaryDirectory(prefix="starburst-chromium-") as profile:
                cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
                try:
                    # Its own process group, so that a timeout ends Chromium's helpers too.
                    proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    )
                except OSError as e:
                    raise ChromiumError(f"cannot run {self.binary}: {e}") from e
                try:
                    out, err = proc.communicate(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    last = f"timed out after {self.timeout}s: {' '.join(cmd)}"
                    continue
                finally:
                    # Helpers left behind by a crashed browser.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            stdout = out.decode("utf-8", "replace")
            stderr = err.decode("utf-8", "replace")
            if proc.returncode != 0:
                last = f"exit status {proc.returncode}: {' '.join(cmd)}\n{stderr[-2000:]}"
                continue
            return stdout, stderr
        raise ChromiumError(last)

    def render(self, path):
        """(rendered DOM, console problems) of the HTML file at `path`."""
        dom, stderr = self._run(["--dump-dom", file_url(path)])
        return dom, console_problems(stderr)

    def screenshot(self, path, out):
        self._run(["--window-size=1280,900", "--hide-scrollbars", f"--screenshot={out}", file_url(path)])
        if not os.path.isfile(out) or os.path.getsize(out) == 0:
            raise ChromiumError(f"Chromium wrote no screenshot {out}")


def file_url(path):
    return "file://" + os.path.abspath(path)


def html_pages(root):
    pages = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                pages.append(posixpath.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(pages)


def resolve(root, page, url):
    """Where `url` on `page` points: ("external", None, None), ("skip", None, None),
    ("internal", site-relative path or None when it leaves the site, fragment), or
    ("bad", message, None)."""
    if url.strip() == "":
        # An empty src/href (pkgdown 2.0.7 writes <img src="" class="logo"> when there is no
        # logo): nothing is fetched.
        return ("skip", None, None)
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") or url.strip().startswith("//"):
        return ("external", None, None)
    if scheme in ("mailto", "tel", "javascript", "data", "about"):
        return ("skip", None, None)
    fragment = unquote(parts.fragment)
    if scheme == "file":
        target = os.path.abspath(unquote(parts.path))
        rel = os.path.relpath(target, os.path.abspath(root))
        if rel.startswith(".."):
            return ("internal", None, fragment)
        return ("internal", rel.replace(os.sep, "/"), fragment)
    if scheme:
        return ("bad", f"unknown URL scheme {scheme!r}", None)
    path = unquote(parts.path)
    if path.startswith("/"):
        return ("bad", "absolute path: it breaks when the site is not at a server's root", None)
    if path == "":
        return ("internal", page, fragment)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
    if target == ".." or target.startswith("../"):
        return ("internal", None, fragment)
    if target == ".":
        target = ""
    return ("internal", target, fragment)


def existing_file(root, target):
    """The site file `target` names (a folder means its index.html), or None."""
    full = os.path.join(root, target)
    if os.path.isdir(full):
        target = posixpath.join(target, "index.html") if target else "index.html"
        full = os.path.join(root, target)
    return target if os.path.isfile(full) else None


def check_site(root, render, jobs=2, log=None):
    """Renders every page with `render(path) -> (dom, console problems)` and returns
    (problems as (page, message) pairs, statistics)."""
    pages = html_pages(root)
    problems = []
    if "index.html" not in pages:
        problems.append(("index.html", "the site has no home page"))
    rendered = {}
    t = time.monotonic()

    def one(p):
        return p, render(os.path.join(root, p))

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for p, result in pool.map(one, pages):
            rendered[p] = result
            if log:
                log(f"  rendered {p}")
    parsed = {p: parse_page(dom) for p, (dom, _console) in rendered.items()}
    stats = {"pages": len(pages), "links": 0, "internal": 0, "seconds": time.monotonic() - t}
    edges = {p: set() for p in pages}

    for p in pages:
        info = parsed[p]
        dom, console = rendered[p]
        if not dom.strip():
            problems.append((p, "Chromium rendered an empty document"))
            continue
        if not info.title:
            problems.append((p, "no <title>"))
        if not info.has_main:
            problems.append((p, "no <main> element"))
        elif not info.main_text:
            problems.append((p, "the <main> element is empty"))
        for err in info.r_errors:
            problems.append((p, f"R error in the output: {err[:300]}"))
        for sig in ERROR_SIGNATURES:
            if sig in info.text:
                problems.append((p, f"R error text {sig!r} on the page"))
        for msg in console:
            problems.append((p, f"browser console: {msg}"))
        for tag, attr, url, loaded in info.urls:
            stats["links"] += 1
            kind, target, fragment = resolve(root, p, url)
            where = f"<{tag} {attr}={url!r}>"
            if kind == "skip":
                continue
            if kind == "external":
                if loaded:
                    problems.append((p, f"{where} loads from outside the site (the site must work offline)"))
                continue
            if kind == "bad":
                problems.append((p, f"broken link {where}: {target}"))
                continue
            stats["internal"] += 1
            if target is None:
                problems.append((p, f"broken link {where}: points outside the site"))
                continue
            found = existing_file(root, target)
            if found is None:
                problems.append((p, f"broken link {where}: no file {target} in the site"))
                continue
            if found in parsed:
                if tag in ("a", "area"):
                    edges[p].add(found)
                if fragment and fragment not in parsed[found].ids:
                    problems.append(
                        (p, f"broken link {where}: {found} has no element with id {fragment!r}")
                    )

    # Reachability from the home page.
    if "index.html" in parsed:
        seen = {"index.html"}
        todo = ["index.html"]
        while todo:
            for q in edges[todo.pop()]:
                if q not in seen:
                    seen.add(q)
                    todo.append(q)
        for p in pages:
            if p not in seen and posixpath.basename(p) not in UNLINKED_OK:
                problems.append((p, "no chain of links from index.html reaches this page"))
    return problems, stats


def screenshot_targets(root):
    """The home page and one article (articles/starburst.html, the Get started article, when
    it is there; otherwise the first article; the reference index when there is none)."""
    targets = []
    if os.path.isfile(os.path.join(root, "index.html")):
        targets.append(("home", "index.html"))
    articles = [
        p for p in html_pages(root)
        if p.startswith("articles/") and p != "articles/index.html"
    ]
    if "articles/starburst.html" in articles:
        targets.append(("article", "articles/starburst.html"))
    elif articles:
        targets.append(("article", articles[0]))
    elif os.path.isfile(os.path.join(root, "reference", "index.html")):
        targets.append(("reference", "reference/index.html"))
    return targets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", help="the built site's folder")
    ap.add_argument("--screenshots", help="folder for screenshots of the home page and one article")
    ap.add_argument("--chromium", help="the browser (default: chromium-headless-shell on PATH)")
    ap.add_argument("--jobs", type=int, default=2, help="pages rendered at once (default 2)")
    ap.add_argument("--verbose", action="store_true", help="print each page as it is rendered")
    args = ap.parse_args(argv)

    root = os.path.abspath(args.site)
    if not os.path.isdir(root):
        print(f"check_site: no site at {root}", file=sys.stderr)
        return 2
    try:
        browser = Chromium(find_chromium(args.chromium))
        problems, stats = check_site(
            root, browser.render, jobs=args.jobs, log=print if args.verbose else None
        )
    except ChromiumError as e:
        print(f"check_site: {e}", file=sys.stderr)
        return 2

    shots = []
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
        for name, page in screenshot_targets(root):
            out = os.path.abspath(os.path.join(args.screenshots, f"{name}.png"))
            try:
                browser.screenshot(os.path.join(root, page), out)
                shots.append((page, out))
            except ChromiumError as e:
                problems.append((page, f"screenshot failed: {e}"))

    print(
        f"site check: {stats['pages']} pages rendered in headless Chromium in "
        f"{stats['seconds']:.1f}s, {stats['links']} links and resources "
        f"({stats['internal']} internal) checked"
    )
    for page, out in shots:
        print(f"screenshot of {page}: {out}")
    if problems:
        by_page = {}
        for page, msg in problems:
            by_page.setdefault(page, []).append(msg)
        print(f"site check FAILED: {len(problems)} problems on {len(by_page)} pages", file=sys.stderr)
        for page in sorted(by_page):
            print(f"  {page}:", file=sys.stderr)
            for msg in by_page[page]:
                print(f"    - {msg}", file=sys.stderr)
        return 1
    print("site check: all pages render and every internal link resolves")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
