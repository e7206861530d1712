"""The remote engine's server pool: least outstanding requests, rotation, backoff, Retry-After."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from dictated.engines.remote.pool import ServerPool

URLS = ("http://a/v1", "http://b/v1", "http://c/v1")


class Clock:
    """A clock the test moves by hand, so backoff periods are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sequential_requests_rotate_over_idle_servers():
    """One inference thread always sees 0 outstanding: ties must rotate, not pick the first."""
    pool = ServerPool(URLS, backoff_s=1, max_backoff_s=8)
    picks = []
    for _ in range(9):
        url = pool.acquire()
        picks.append(url)
        pool.succeeded(url, 10.0)
    assert Counter(picks) == {u: 3 for u in URLS}
    assert len(set(picks[:3])) == 3  # each server once before any twice


def test_least_outstanding_wins_over_rotation():
    pool = ServerPool(URLS[:2], backoff_s=1, max_backoff_s=8)
    first = pool.acquire()
    second = pool.acquire()
    assert {first, second} == set(URLS[:2])
    pool.succeeded(second, 1.0)
    # `first` is still busy: the next two requests both go to the idle one first
    assert pool.acquire() == second
    assert pool.acquire() in URLS[:2]


def test_concurrent_use_keeps_counts_right():
    """Many threads acquiring and releasing: outstanding never goes negative, spread stays even."""
    pool = ServerPool(URLS, backoff_s=1, max_backoff_s=8)
    picks: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(300):
            url = pool.acquire()
            with lock:
                picks[url] += 1
            pool.succeeded(url, 1.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(picks.values()) == 2400
    assert all(h.outstanding == 0 for h in pool.health())
    assert max(picks.values()) - min(picks.values()) < 2400 * 0.1


def test_failed_server_sits_out_with_doubling_backoff_then_recovers():
    clock = Clock()
    pool = ServerPool(URLS[:1], backoff_s=0.5, max_backoff_s=2, clock=clock)
    waits = []
    for _ in range(4):
        url = pool.acquire()
        assert url == URLS[0]
        pool.failed(url, "connection refused")
        assert pool.acquire() is None  # taken out
        (health,) = pool.health()
        waits.append(health.retry_in_s)
        assert not health.healthy and health.last_error == "connection refused"
        clock.now += health.retry_in_s
    assert waits == [0.5, 1.0, 2.0, 2.0]  # doubling, capped
    url = pool.acquire()
    pool.succeeded(url, 42.0)
    (health,) = pool.health()
    assert health.healthy and health.latency_ms == 42.0 and health.retry_in_s is None
    pool.failed(pool.acquire(), "HTTP 500")
    assert pool.health()[0].retry_in_s == 0.5  # success reset the backoff


def test_retry_after_is_honoured_instead_of_the_backoff():
    clock = Clock()
    pool = ServerPool(URLS[:2], backoff_s=0.5, max_backoff_s=2, clock=clock)
    a = pool.acquire()
    pool.failed(a, "HTTP 429", retry_after_s=7)
    b = pool.acquire()
    assert b != a  # the other one takes over
    pool.succeeded(b, 1.0)
    clock.now += 6.9
    assert pool.acquire(frozenset({b})) is None
    clock.now += 0.2
    assert pool.acquire(frozenset({b})) == a


def test_excluded_and_empty():
    pool = ServerPool(URLS[:2], backoff_s=1, max_backoff_s=8)
    assert pool.acquire(frozenset(URLS[:2])) is None
    with pytest.raises(ValueError):
        ServerPool((), backoff_s=1, max_backoff_s=8)
