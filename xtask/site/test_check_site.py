"""Tests of check_site.py on tiny fake sites: what it must report, and what it must not.

The logic runs on a stand-in renderer that returns each file as it is; the tests marked
"Chromium" open the pages in the real headless browser (skipped when none is installed).
Run: python3 -m unittest discover -s xtask/site -p 'test_*.py'
"""

import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_site  # noqa: E402


def page(title, body, head=""):
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head>"
        f"<body><nav><a href='index.html'>Home</a></nav><main id='main'>{body}</main></body></html>"
    )


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def as_is(path):
    """A renderer without a browser: the file as written, no console messages."""
    with open(path, encoding="utf-8") as f:
        return f.read(), []


def fake_site(root):
    write(root, "index.html", page("Home", """
        <h1 id="top">starburst</h1>
        <a href="reference/index.html">Reference</a>
        <a href="reference/">Reference (folder)</a>
        <a href="articles/intro.html#setup">Set-up</a>
        <a href="articles/missing.html">A page that is not there</a>
        <a href="articles/intro.html#no-such-section">A section that is not there</a>
        <a href="#top">Top</a>
        <a href="https://example.org/elsewhere.html">External links are fine</a>
        <a href="mailto:someone@example.org">Mail</a>
        <img src="" alt="">
        <img src="logo.png" alt="logo">
        """, head='<link rel="stylesheet" href="style.css">'))
    write(root, "style.css", "main { color: black; }")
    write(root, "logo.png", "not really a png")
    write(root, "reference/index.html", page("Reference", """
        <a href="../index.html#top">Home</a> <a href="topic.html">topic()</a>
        <a href="../../outside.html">Outside the site</a>
        """))
    write(root, "reference/topic.html", page("topic()", """
        <pre><span class="r-in">f()</span>
        <span class="r-err co"><span class="r-pr">#&gt;</span> <span class="error">Error in f():</span> could not find function "f"</span></pre>
        """))
    write(root, "articles/intro.html", page("Introduction", """
        <h2 id="setup">Set-up</h2><p>Text.</p>
        <a href="/absolute.html">Root-absolute</a>
        """, head='<script src="https://cdn.example.org/lib.js"></script>'))
    write(root, "articles/empty.html", page("", "   "))
    write(root, "articles/no-main.html",
          "<html><head><title>No main</title></head><body>x<a href='../index.html'>h</a></body></html>")
    write(root, "orphan.html", page("Orphan", "<p>Nothing links here.</p>"))
    write(root, "404.html", page("Page not found", "<p>404</p>"))


class CheckSiteLogic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = cls.tmp.name
        fake_site(cls.root)
        cls.problems, cls.stats = check_site.check_site(cls.root, as_is, jobs=2)
        cls.messages = [f"{p}: {m}" for p, m in cls.problems]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assertReported(self, page, *words):
        hits = [m for p, m in self.problems if p == page and all(w in m for w in words)]
        self.assertTrue(hits, f"no problem on {page} mentioning {words}; got:\n" + "\n".join(self.messages))

    def test_broken_link_is_reported_with_its_page(self):
        self.assertReported("index.html", "broken link", "articles/missing.html")

    def test_missing_fragment_is_reported(self):
        self.assertReported("index.html", "articles/intro.html", "no-such-section")

    def test_links_leaving_the_site_or_root_absolute_are_reported(self):
        self.assertReported("reference/index.html", "../../outside.html", "outside the site")
        self.assertReported("articles/intro.html", "/absolute.html", "absolute path")

    def test_external_resource_is_reported(self):
        self.assertReported("articles/intro.html", "cdn.example.org", "offline")

    def test_r_error_in_output_is_reported(self):
        self.assertReported("reference/topic.html", "R error", 'could not find function "f"')

    def test_page_without_title_or_content_is_reported(self):
        self.assertReported("articles/empty.html", "no <title>")
        self.assertReported("articles/empty.html", "<main> element is empty")
        self.assertReported("articles/no-main.html", "no <main> element")

    def test_unreachable_page_is_reported_but_not_404(self):
        self.assertReported("orphan.html", "from index.html")
        self.assertFalse([m for p, m in self.problems if p == "404.html"], self.messages)

    def test_good_links_are_not_reported(self):
        for _page, m in self.problems:
            for good in ("reference/index.html'", "reference/'", "#setup", "#top", "example.org/elsewhere",
                         "mailto:", "style.css", "logo.png", "src=''", "'topic.html'"):
                self.assertNotIn(good, m, f"reported a good link: {m}")

    def test_every_page_is_rendered(self):
        self.assertEqual(self.stats["pages"], 8)


class ResolveUrls(unittest.TestCase):
    def test_resolve(self):
        r = check_site.resolve
        self.assertEqual(r("/s", "a/b.html", "../c.html#x"), ("internal", "c.html", "x"))
        self.assertEqual(r("/s", "a/b.html", "#y%20z"), ("internal", "a/b.html", "y z"))
        self.assertEqual(r("/s", "index.html", "../x.html"), ("internal", None, ""))
        self.assertEqual(r("/s", "index.html", "HTTPS://x.org")[0], "external")
        self.assertEqual(r("/s", "index.html", "//cdn.x.org/a.js")[0], "external")
        self.assertEqual(r("/s", "index.html", "data:image/png;base64,AA")[0], "skip")
        self.assertEqual(r("/s", "index.html", "file:///s/a/b.html#q"), ("internal", "a/b.html", "q"))
        self.assertEqual(r("/s", "index.html", "file:///etc/passwd"), ("internal", None, ""))


class ConsoleLog(unittest.TestCase):
    def test_errors_are_picked_out_of_chromium_log(self):
        log = "\n".join([
            '[1204/174240.445016:INFO:CONSOLE:1] "hello", source: file:///s/a.html (1)',
            '[1204/174240.445712:INFO:CONSOLE:1] "Uncaught ReferenceError: f is not defined", '
            "source: file:///s/a.html (3)",
            '[0101/000000.1:INFO:CONSOLE(12)] "Failed to load resource: net::ERR_FILE_NOT_FOUND", '
            "source: file:///s/x.js (0)",
            "[1204/174235.5:ERROR:dbus/bus.cc:405] Failed to connect to the bus",
        ])
        got = check_site.console_problems(log)
        self.assertEqual(len(got), 2, got)
        self.assertIn("Uncaught ReferenceError", got[0])
        self.assertIn("ERR_FILE_NOT_FOUND", got[1])


def chromium():
    try:
        return check_site.find_chromium()
    except check_site.ChromiumError:
        return None


@unittest.skipUnless(chromium(), "no headless Chromium installed")
class InChromium(unittest.TestCase):
    """The same checks through the real browser: ids made by scripts count, script errors
    and broken links fail, and the command line lists each problem with its page."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        script = """<script>
          document.addEventListener("DOMContentLoaded", function() {
            var h = document.createElement("h2"); h.id = "made-by-script"; h.textContent = "Hi";
            document.getElementById("main").appendChild(h);
          });
        </script>"""
        write(self.root, "index.html", page("Home", """
            <a href="second.html#made-by-script">made by a script</a>
            <a href="second.html#never-made">never made</a>
            <a href="gone.html">gone</a>
            """))
        write(self.root, "second.html", page("Second", "<p>Second page.</p>", head=script))
        write(self.root, "broken-js.html", page("Broken script", "<a href='index.html'>home</a>",
                                                head="<script>notDefined();</script>"))
        write(self.root, "lists.html", page("Lists", "<a href='broken-js.html'>b</a>"))
        # index -> lists is missing on purpose: lists.html and broken-js.html are unreachable.

    def tearDown(self):
        self.tmp.cleanup()

    def test_rendered_dom_and_console(self):
        browser = check_site.Chromium(chromium(), timeout=60)
        problems, stats = check_site.check_site(self.root, browser.render, jobs=2)
        messages = [f"{p}: {m}" for p, m in problems]
        self.assertEqual(stats["pages"], 4)
        self.assertFalse([m for m in messages if "made-by-script" in m], messages)
        self.assertTrue([m for m in messages if m.startswith("index.html") and "never-made" in m], messages)
        self.assertTrue([m for m in messages if m.startswith("index.html") and "gone.html" in m], messages)
        self.assertTrue(
            [m for m in messages if m.startswith("broken-js.html") and "Uncaught ReferenceError" in m],
            messages)
        self.assertTrue([m for m in messages if m.startswith("lists.html") and "from index.html" in m], messages)

    def test_command_line_fails_listing_broken_links_and_writes_screenshots(self):
        shots = os.path.join(self.root, "..", os.path.basename(self.root) + "-shots")
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = check_site.main([self.root, "--screenshots", shots])
            self.assertEqual(status, 1, out.getvalue() + err.getvalue())
            self.assertIn("site check FAILED", err.getvalue())
            self.assertIn("  index.html:\n", err.getvalue())
            self.assertIn("gone.html", err.getvalue())
            home = os.path.join(os.path.abspath(shots), "home.png")
            self.assertIn(home, out.getvalue())
            with open(home, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        finally:
            for f in os.listdir(shots) if os.path.isdir(shots) else []:
                os.remove(os.path.join(shots, f))
            if os.path.isdir(shots):
                os.rmdir(shots)


if __name__ == "__main__":
    unittest.main()
