"""The HTML report in headless Chromium: every image decodes, the console stays clean.

A copy of ``index.html`` gets a small inline probe script at the top of ``<head>`` (and a
Content-Security-Policy that lets inline scripts run but still forbids every fetch); it
records ``console.error`` calls, error events (failed resource loads included) and CSP
violations, and on ``load`` writes them with each image's natural size into the DOM,
which ``--dump-dom`` prints. The report itself is left as written; opened as it is, with
Chromium's console logged to stderr, it must log nothing at all (it has no script, so any
console line is the browser's own complaint), and a screenshot of it is taken.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from attnmag.reports import write_report
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
    "--enable-logging=stderr",
    "--v=0",
]
PROBE = """<script>
(function () {
  var errors = [];
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var target = e.target && e.target !== window ? e.target.tagName + " " + e.target.src : "";
    errors.push("error: " + (e.message || target.slice(0, 120)));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("rejection: " + e.reason);
  });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("csp: " + e.violatedDirective + " " + e.blockedURI);
  });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {width: img.naturalWidth, height: img.naturalHeight, complete: img.complete};
    });
    var out = document.createElement("pre");
    out.id = "attnmag-probe";
    out.textContent = JSON.stringify({images: images, errors: errors});
    document.body.appendChild(out);
  });
})();
</script>"""
PROBE_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on this machine (apt-get install chromium to run the browser check)",
)


def _chromium(args: list[str], *, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _probe(page: Path, tmp_path: Path) -> dict:
    """Open a probed copy of ``page``; return the image sizes and errors it recorded."""
    text = page.read_text(encoding="utf-8")
    csp = re.compile(r'(<meta http-equiv="Content-Security-Policy" content=")[^"]*(">)')
    assert csp.search(text), "the report sets no Content-Security-Policy"
    text = csp.sub(lambda m: m.group(1) + PROBE_CSP + m.group(2), text)
    text = text.replace("<head>", "<head>\n" + PROBE, 1)
    probed = page.with_name("probe.html")
    probed.write_text(text, encoding="utf-8")
    result = _chromium(["--dump-dom", probed.as_uri()], profile=tmp_path / "profile-probe")
    found = re.search(r'<pre id="attnmag-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe wrote nothing; chromium said: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    frame = simulated_frame(120, 3, lag1=0.3, seed=4)
    out = tmp_path_factory.mktemp("report")
    return write_report(frame, out, formats=("html",), tables=fake_tables(frame))["index.html"]


def test_report_opens_in_chromium_with_every_image_and_no_error(report, tmp_path):
    probe = _probe(report, tmp_path)
    assert probe["errors"] == []
    assert len(probe["images"]) == 5
    for image in probe["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_probe_catches_a_broken_image_and_an_external_fetch(report, tmp_path):
    broken = report.with_name("broken.html")
    text = report.read_text(encoding="utf-8").replace(
        "</main>",
        '<img src="data:image/png;base64,AAAA" alt="broken">'
        '<img src="https://example.org/x.png" alt="remote"></main>',
    )
    broken.write_text(text, encoding="utf-8")
    probe = _probe(broken, tmp_path)
    assert [i["width"] for i in probe["images"][-2:]] == [0, 0]
    assert any(e.startswith("csp:") and "example.org" in e for e in probe["errors"])
    assert any(e.startswith("error:") for e in probe["errors"])
    result = _chromium(["--dump-dom", broken.as_uri()], profile=tmp_path / "profile-log")
    assert any("example.org" in line for line in _console_lines(result.stderr))


def test_report_as_written_logs_nothing_and_screenshots(report, tmp_path):
    shot = tmp_path / "report.png"
    result = _chromium(
        [f"--screenshot={shot}", "--window-size=1200,4000", report.as_uri()],
        profile=tmp_path / "profile-shot",
    )
    assert shot.exists(), result.stderr[-2000:]
    assert _console_lines(result.stderr) == []
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1200, 4000)
