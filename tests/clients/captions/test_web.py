"""The live caption page in real headless Chromium: backlog first, live updates, escaping, reconnects."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest

from dictated.clients.captions.web import Caption, CaptionFeed, CaptionServer
from tests.chromium import Chromium, chromium_path

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="needs chromium (apt-get install chromium)"
)

HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> & </p><script>alert(1)</script>"
CAPTIONS_JS = "Array.from(document.querySelectorAll('p.caption span'), e => e.textContent)"


def caption(seq: int, text: str) -> Caption:
    return Caption(seq, f"r-{seq}", text, float(seq), seq + 0.9)


@pytest.fixture
def browser(tmp_path):
    b = Chromium(tmp_path / "profile")
    yield b
    b.close()


def read_events(port: int, headers: dict[str, str], count: int) -> list[tuple[str, str, str]]:
    """The first `count` SSE events (id, event, data) of /events, read with a plain HTTP client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/events", headers=headers)
    reply = conn.getresponse()
    assert reply.status == 200 and reply.getheader("Content-Type").startswith("text/event-stream")
    events, fields = [], {}
    while len(events) < count:
        line = reply.readline().decode().rstrip("\n")
        if line:
            key, _, value = line.partition(": ")
            fields[key] = value
        elif fields:
            if "event" in fields:
                events.append((fields.get("id", ""), fields["event"], fields.get("data", "")))
            fields = {}
    conn.close()
    return events


def test_page_shows_backlog_then_live_captions_and_reconnects_by_itself(browser):
    feed = CaptionFeed()
    feed.add(caption(3, "said before the page was opened"))
    feed.add(caption(5, HOSTILE))
    server = CaptionServer(feed, "127.0.0.1", 0)
    server.start()
    port = server.server_address[1]
    try:
        page = browser.open(server.url)
        assert page.wait_for(f"{CAPTIONS_JS}.length === 2 && {CAPTIONS_JS}") == [
            "said before the page was opened",
            HOSTILE,  # shown as text, never parsed as HTML
        ]
        assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0
        assert page.evaluate("document.title") == "dictated captions"

        feed.set_state(state="ready")
        feed.set_partial("r-7", "words still being")
        assert page.wait_for("document.getElementById('partial').textContent") == (
            "words still being"
        )
        feed.add(caption(7, "words still being spoken"))  # live, no reload
        assert page.wait_for(f"{CAPTIONS_JS}.length === 3 && {CAPTIONS_JS}[2]") == (
            "words still being spoken"
        )
        assert page.evaluate("document.getElementById('partial').textContent") == ""
        assert page.evaluate("document.getElementById('state').textContent") == "live"
    finally:
        server.stop()

    # The captions client restarts on the same port with more said meanwhile: the page
    # reconnects on its own and asks only for what it has not seen (Last-Event-ID).
    page.wait_for("document.getElementById('state').textContent.startsWith('reconnecting')")
    feed2 = CaptionFeed()
    for seq, text in [(3, "said before"), (5, "hostile"), (7, "spoken"), (9, "after restart")]:
        feed2.add(caption(seq, text))
    server2 = CaptionServer(feed2, "127.0.0.1", port)
    server2.start()
    try:
        assert page.wait_for(f"{CAPTIONS_JS}.length === 4 && {CAPTIONS_JS}[3]", 30) == (
            "after restart"
        )
        seqs = page.evaluate(
            "Array.from(document.querySelectorAll('p.caption'), e => +e.dataset.seq)"
        )
        assert seqs == [3, 5, 7, 9]  # nothing twice
    finally:
        server2.stop()


def test_event_stream_resumes_after_last_event_id_and_refuses_foreign_hosts():
    feed = CaptionFeed()
    for seq in (2, 4, 6):
        feed.add(caption(seq, f"caption {seq}"))
    server = CaptionServer(feed, "127.0.0.1", 0)
    server.start()
    port = server.server_address[1]
    try:
        events = read_events(port, {}, 4)
        assert [(i, e) for i, e, _ in events] == [
            ("2", "caption"),
            ("4", "caption"),
            ("6", "caption"),
            ("", "status"),
        ]
        resumed = read_events(port, {"Last-Event-ID": "4"}, 2)
        assert [(i, e) for i, e, _ in resumed] == [("6", "caption"), ("", "status")]

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/events", headers={"Host": "evil.example:80"})  # DNS rebinding
        assert conn.getresponse().status == 421
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        server.stop()


def test_web_binds_loopback_unless_remote_is_explicitly_allowed():
    refused = subprocess.run(
        [sys.executable, "-m", "dictated.clients.captions", "--web", "0", "--web-host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
