"""The HTML report in headless Chromium, loaded as written under its own Content-Security-Policy.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
commands go to its fd 3, replies and events come from its fd 4, JSON messages ended by a
NUL byte), so no package beyond the browser is needed and nothing is injected into the
page: the report's own CSP (no script at all) stays in force. DevTools evaluates the
checks outside the page's CSP: every image is decoded (``img.decode()``) and drawn to a
canvas whose pixels are read back. A PNG cut short can still decode (Chromium draws the
rows it has), so the pixels are what catch it: matplotlib's figures are opaque
everywhere, and a cut PNG leaves its last rows transparent. Everything the browser logs
(CSP violations, failed loads, console calls, exceptions) is collected; the report as
written must log nothing. Opened from the command line with its console logged to
stderr, it must log nothing there either, and a screenshot of it is taken.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
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
]
#: Decode each image, draw it on a canvas and count its transparent and inked (not white)
#: pixels; an image that does not decode says why.
IMAGE_CHECK = """Promise.all(Array.from(document.images).map(async (img) => {
  try { await img.decode(); } catch (e) { return {decoded: false, error: String(e)}; }
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let transparent = 0, inked = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] === 0) transparent++;
    else if (pixels[i] < 250 || pixels[i + 1] < 250 || pixels[i + 2] < 250) inked++;
  }
  return {decoded: true, width: canvas.width, height: canvas.height, transparent, inked};
}))"""
#: DevTools events that carry something the browser logged.
LOGGED = ("Log.entryAdded", "Runtime.consoleAPICalled", "Runtime.exceptionThrown")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on this machine (apt-get install chromium to run the browser check)",
)


class DevTools:
    """One headless Chromium, driven over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def pipes_to_3_and_4() -> None:  # runs in the child, before exec
            os.dup2(commands_read, 3)
            os.dup2(replies_write, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            pass_fds=(3, 4),
            preexec_fn=pipes_to_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, *, session: str | None = None):
        """Send one command; return its result (events that arrive meanwhile are kept)."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            for reply in self._read(deadline):
                if reply.get("id") != self._last_id:
                    self.events.append(reply)
                elif "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                else:
                    return reply["result"]

    def wait_for(self, method: str, *, session: str) -> dict:
        """The first event ``method`` of ``session`` (waiting for it up to 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.extend(self._read(deadline))

    def _read(self, deadline: float) -> list[dict]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium sent nothing for 60 s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (EOFError, OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[DevTools]:
    devtools = DevTools(tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


def _open(browser: DevTools, page: Path) -> dict:
    """Load ``page`` in a new tab; return its images' check, what it logged, and its title
    and Content-Security-Policy as the browser sees them."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Page.navigate", {"url": page.as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", session=session)

    def evaluate(expression: str):
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        return browser.call("Runtime.evaluate", params, session=session)["result"]["value"]

    images = evaluate(IMAGE_CHECK)
    csp = evaluate(
        "(document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]') || {}).content"
    )
    title = evaluate("document.title")
    browser.call("Target.closeTarget", {"targetId": target})
    mine = [e for e in browser.events if e.get("sessionId") == session]
    browser.events = [e for e in browser.events if e.get("sessionId") != session]
    logged = [json.dumps(e["params"]) for e in mine if e.get("method") in LOGGED]
    return {"images": images, "logged": logged, "csp": csp, "title": title}


def _png_size(data_uri: str) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = base64.b64decode(data_uri.split(",", 1)[1][:64])
    return struct.unpack(">II", head[16:24])


def _image_problems(images: list[dict], sources: list[str]) -> list[str]:
    """Why each image is not whole: it did not decode, its size is not the PNG's, some of
    its pixels are transparent, or nothing is drawn on it."""
    problems = []
    for number, (image, source) in enumerate(zip(images, sources, strict=True), start=1):
        if not image["decoded"]:
            problems.append(f"image {number} does not decode: {image['error']}")
            continue
        size = (image["width"], image["height"])
        if size != _png_size(source):
            problems.append(f"image {number} is {size}, its PNG says {_png_size(source)}")
        if image["transparent"]:
            problems.append(f"image {number} has {image['transparent']} transparent pixels")
        if image["inked"] < 0.01 * size[0] * size[1]:
            problems.append(f"image {number} is blank ({image['inked']} inked pixels)")
    return problems


def _sources(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page.read_text(encoding="utf-8"))


def _report_csp(page: Path) -> str:
    found = re.search(
        r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">',
        page.read_text(encoding="utf-8"),
    )
    assert found, "the report sets no Content-Security-Policy"
    return found.group(1).replace("&#39;", "'")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    frame = simulated_frame(120, 3, lag1=0.3, seed=4)
    out = tmp_path_factory.mktemp("report")
    return write_report(frame, out, formats=("html",), tables=fake_tables(frame))["index.html"]


def test_report_opens_under_its_own_csp_with_every_image_whole(browser, report):
    opened = _open(browser, report)
    assert (
        opened["csp"]
        == _report_csp(report)
        == ("default-src 'none'; img-src data:; style-src 'unsafe-inline'")
    )
    assert opened["logged"] == []
    sources = _sources(report)
    assert len(sources) == len(opened["images"]) == 5
    assert _image_problems(opened["images"], sources) == []


def test_a_png_cut_to_half_its_bytes_fails_the_check(browser, report):
    text = report.read_text(encoding="utf-8")
    source = _sources(report)[0]
    png = base64.b64decode(source.split(",", 1)[1])
    half = "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode("ascii")
    cut = report.with_name("cut.html")
    cut.write_text(text.replace(source, half, 1), encoding="utf-8")
    opened = _open(browser, cut)
    problems = _image_problems(opened["images"], _sources(cut))
    assert problems and all(p.startswith("image 1 ") for p in problems), problems


def _command_line(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Open ``page`` with Chromium's console logged to stderr."""
    return subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            "--virtual-time-budget=10000",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_reports_csp_blocks_scripts_and_fetches(browser, report, tmp_path):
    """A copy with an inline script, a remote image and a broken one: the script does not
    run, the fetch is refused and logged, and the broken image fails the check."""
    bad = report.with_name("bad.html")
    bad.write_text(
        report.read_text(encoding="utf-8").replace(
            "</main>",
            '<img src="data:image/png;base64,AAAA" alt="broken">'
            '<img src="https://example.org/x.png" alt="remote">'
            '<script>document.title = "the script ran";</script></main>',
        ),
        encoding="utf-8",
    )
    opened = _open(browser, bad)
    assert opened["title"] != "the script ran"
    logged = " ".join(opened["logged"])
    assert "example.org" in logged and "Content Security Policy" in logged
    assert "inline script" in logged
    problems = _image_problems(opened["images"], _sources(bad))
    assert [p.split(" ")[1] for p in problems if "does not decode" in p] == ["6", "7"]
    logged = _console_lines(_command_line(bad, tmp_path / "profile-log", "--dump-dom").stderr)
    assert any("example.org" in line for line in logged)


def test_report_as_written_logs_nothing_and_screenshots(report, tmp_path):
    shot = tmp_path / "report.png"
    result = _command_line(
        report, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,4000"
    )
    assert shot.exists(), result.stderr[-2000:]
    assert _console_lines(result.stderr) == []
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1200, 4000)
