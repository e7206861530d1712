"""The live page labels each caption with its speaker, one readable colour each (real Chromium)."""

from __future__ import annotations

import pytest

from dictated.clients.captions.web import Caption, CaptionFeed, CaptionServer
from tests.chromium import Chromium, chromium_path

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="needs chromium (apt-get install chromium)"
)

HOSTILE = '<img src=x onerror="document.title=1">'
ROWS_JS = (
    "Array.from(document.querySelectorAll('p.caption'), p => {"
    " const who = p.querySelector('.who');"
    " return [who ? who.textContent : null, who ? getComputedStyle(who).color : null,"
    " p.lastElementChild.textContent]; })"
)


def _luminance(rgb: str) -> float:
    """WCAG relative luminance of a CSS "rgb(r, g, b)"."""
    channels = [int(v) / 255 for v in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_page_shows_each_speaker_in_its_own_readable_colour_in_time_order(tmp_path):
    feed = CaptionFeed()
    feed.add(Caption(1, "r-mic-1", "hello", 1.0, 2.0, "me"))
    feed.add(Caption(2, "r-system-1", "hi there", 3.0, 4.0, "them"))
    feed.add(Caption(3, "r-x-1", "no label", 5.0, 6.0))
    server = CaptionServer(feed, "127.0.0.1", 0)
    server.start()
    browser = Chromium(tmp_path / "profile")
    try:
        page = browser.open(server.url)
        rows = page.wait_for(f"{ROWS_JS}.length === 3 && {ROWS_JS}")
        assert [(who, text) for who, _, text in rows] == [
            ("me:", "hello"),
            ("them:", "hi there"),
            (None, "no label"),
        ]
        # live: a later speaker with a hostile name, and a final that arrived late goes in its place
        feed.add(Caption(4, "r-sys-2", "early words", 2.5, 2.9, HOSTILE))
        feed.add(Caption(5, "r-mic-2", "me again", 7.0, 8.0, "me"))
        rows = page.wait_for(f"{ROWS_JS}.length === 5 && {ROWS_JS}")
        assert [text for _, _, text in rows] == [
            "hello",
            "early words",
            "hi there",
            "no label",
            "me again",
        ]
        assert rows[1][0] == HOSTILE + ":"  # shown as text
        assert page.evaluate("document.querySelectorAll('main img').length") == 0
        colours = {who: colour for who, colour, _ in rows if who}
        assert len(set(colours.values())) == 3  # one colour per speaker
        assert rows[0][1] == rows[4][1]  # the same speaker keeps its colour
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert all(contrast(c, background) >= 4.5 for c in colours.values()), colours
        # a page opened later colours the meeting alike
        late = browser.open(server.url)
        assert late.wait_for(f"{ROWS_JS}.length === 5 && {ROWS_JS}") == rows
        # partials name their speaker too
        feed.set_partial("r-sys-3", "still talk", "them")
        assert page.wait_for("document.getElementById('partial').textContent") == (
            "them:still talk"
        )
    finally:
        browser.close()
        server.stop()


def test_the_palette_is_fully_distinct_and_readable(tmp_path):
    """All eight colours of the page, each at least 4.5:1 on its background (WCAG AA)."""
    feed = CaptionFeed()
    for i in range(8):
        feed.add(Caption(i + 1, f"r-{i}", f"words {i}", float(i), i + 0.5, f"speaker{i}"))
    server = CaptionServer(feed, "127.0.0.1", 0)
    server.start()
    browser = Chromium(tmp_path / "profile")
    try:
        rows = browser.open(server.url).wait_for(f"{ROWS_JS}.length === 8 && {ROWS_JS}")
        page = browser.open(server.url)
        background = page.wait_for("getComputedStyle(document.body).backgroundColor")
        assert len({colour for _, colour, _ in rows}) == 8
        assert min(contrast(colour, background) for _, colour, _ in rows) >= 7.0
    finally:
        browser.close()
        server.stop()
