"""The caption page's server under abuse, with real sockets: bounded threads, timeouts, no spin,
and a Host allow-list when shared."""

from __future__ import annotations

import http.client
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dictated.clients.captions.web import Caption, CaptionFeed, CaptionServer
from dictated.clients.captions.web_hosts import HostPolicy

IDLE = 500  # connections that send nothing
CAP = 64  # CaptionServer.max_connections


def get(port: int, path: str = "/", host: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": host} if host else {})
    status = conn.getresponse().status
    conn.close()
    return status


def read_until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing; None if it is still open at `deadline`."""
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return None


def test_idle_connections_are_capped_and_closed_after_the_request_timeout():
    server = CaptionServer(CaptionFeed(), "127.0.0.1", 0)
    server.request_timeout_s = 1.0  # the default is 5 s
    baseline = threading.active_count()
    server.start()
    port = server.server_address[1]
    idle: list[socket.socket] = []
    try:
        started = time.monotonic()
        most = 0  # handler threads, sampled while the connections pile up
        for i in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            if i % 25 == 0:
                most = max(most, threading.active_count() - baseline - 1)  # less the accept loop
        time.sleep(0.3)  # the accept loop catches up
        most = max(most, threading.active_count() - baseline - 1)
        assert most <= CAP, f"{most} threads for {IDLE} idle connections"
        assert server.max_connections == CAP and server.active_connections <= CAP

        # each is closed by the server: over the cap at once with a 503, the others once idle
        # for the request timeout (which frees their place for later ones)
        deadline = time.monotonic() + server.request_timeout_s + 5.0  # slack for a loaded box
        replies = [read_until_closed(s, deadline) for s in idle]
        still_open = sum(r is None for r in replies)
        assert still_open == 0, f"{still_open} of {IDLE} idle connections still open"
        busy = sum(r.startswith(b"HTTP/1.1 503 ") for r in replies if r)
        assert busy >= IDLE // 4, busy  # the cap answered (how many depends on the pace)
        assert time.monotonic() - started < 30

        assert get(port) == 200  # and it still serves
        waited = time.monotonic() + 5
        while threading.active_count() > baseline + 1 and time.monotonic() < waited:
            time.sleep(0.05)
        assert threading.active_count() <= baseline + 1  # every handler thread ended
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_a_request_trickled_a_byte_at_a_time_is_closed_at_the_deadline():
    server = CaptionServer(CaptionFeed(), "127.0.0.1", 0)
    server.request_timeout_s = 1.0
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        started = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.3)  # each byte well within 1 s
            if readable:
                break
        closed_after = time.monotonic() - started
        assert read_until_closed(sock, time.monotonic() + 3) is not None
        assert closed_after < server.request_timeout_s + 1.5, closed_after
        sock.close()
    finally:
        server.stop()


def test_a_stream_whose_page_stopped_reading_is_closed_after_the_send_timeout():
    feed = CaptionFeed()
    server = CaptionServer(feed, "127.0.0.1", 0)
    server.send_timeout_s = 1.0  # the default is 10 s
    baseline = threading.active_count()
    server.start()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills quickly
    try:
        sock.connect(("127.0.0.1", server.server_address[1]))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)
        assert threading.active_count() == baseline + 2  # accept loop + the stream
        for seq in range(1000):  # 10 MB the page never reads, more than any socket buffers
            feed.add(Caption(seq, f"r-{seq}", "x" * 10_000, float(seq), seq + 0.5))
        deadline = time.monotonic() + 10
        while threading.active_count() > baseline + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() == baseline + 1, "the stalled stream was never closed"
    finally:
        sock.close()
        server.stop()


OUT_OF_FDS_SERVER = """
import logging, os, resource, sys, time
from dictated.clients.captions.web import CaptionFeed, CaptionServer
logging.basicConfig(level=logging.WARNING)
server = CaptionServer(CaptionFeed(), "127.0.0.1", 0)
server.start()
time.sleep(0.2)
spare = 6  # a few connections, then accept() fails with EMFILE
limit = len(os.listdir("/proc/self/fd")) + spare
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
print(server.server_address[1], flush=True)
time.sleep(120)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads CPU time from /proc")
def test_out_of_file_descriptors_the_accept_loop_backs_off_instead_of_spinning():
    proc = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_FDS_SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(40):  # many more than it has descriptors for; left waiting in the backlog
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            clients.append(s)
        time.sleep(0.5)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)
        share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
        # a spinning loop takes a whole core (less on a loaded machine); backing off, ~0
        assert share < 0.05, f"{share:.0%} of a CPU while out of descriptors: the accept loop spins"
        for s in clients:
            s.close()
        clients.clear()
        deadline = time.monotonic() + 10  # its handlers see the clients go and free descriptors
        while True:
            try:
                assert get(port) == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        for s in clients:
            s.close()
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "cannot accept connections (Too many open files)" in err, err  # it did run out


def start_shared(env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.captions", "--web", "0", "--web-host", "0.0.0.0"]
        + ["--allow-remote", "--idle-exit", "60", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    found = re.search(r"live captions at http://0\.0\.0\.0:(\d+)/", line)
    assert found, line
    return proc, int(found.group(1))


def test_a_shared_page_refuses_a_foreign_host_and_answers_its_own_names(isolated_env):
    proc, port = start_shared(isolated_env)
    try:
        assert get(port, host=f"evil.example:{port}") == 421  # DNS rebinding
        assert get(port, "/events", host="evil.example") == 421
        assert get(port, host=f"captions.lan:{port}") == 421  # not named yet
        assert get(port, host=f"127.0.0.1:{port}") == 200
        assert get(port, host=f"{socket.gethostname()}:{port}") == 200  # this machine's name
        assert get(port, host=f"192.0.2.7:{port}") == 200  # bound to all: any address
    finally:
        proc.terminate()
        proc.communicate(timeout=30)

    proc, port = start_shared(isolated_env, "--web-allow-host", "Captions.LAN")
    try:
        assert get(port, host=f"captions.lan:{port}") == 200
        assert get(port, host="evil.example") == 421
    finally:
        proc.terminate()
        proc.communicate(timeout=30)

    bad = subprocess.run(
        [sys.executable, "-m", "dictated.clients.captions", "--web", "0"]
        + ["--web-allow-host", "evil.example/x"],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--web-allow-host: 'evil.example/x' is not a host" in bad.stderr


def test_host_policy_for_one_address_answers_that_address_and_the_machine_name():
    policy = HostPolicy.for_address("192.168.1.5", ["proxy.example"])
    for host in ("192.168.1.5:8080", "localhost:8080", "[::1]:8080", "proxy.example"):
        assert policy.allows(host), host
    assert policy.allows(f"{socket.gethostname()}.local:8080")
    for host in ("10.0.0.1:8080", "evil.example", "", "192.168.1.5.evil.example"):
        assert not policy.allows(host), host
    loopback = HostPolicy.for_address("127.0.0.1")
    assert loopback.allows("127.0.0.1:1") and not loopback.allows(socket.gethostname())


def test_the_backlog_a_new_page_gets_is_bounded():
    feed = CaptionFeed(max_captions=3)
    for seq in range(10):
        feed.add(Caption(seq, f"r-{seq}", f"caption {seq}", float(seq), seq + 0.5))
    assert [c.seq for c in feed.wait(-1, 0).captions] == [7, 8, 9]
    assert [c.seq for c in feed.wait(-1, 0, after=8).captions] == [9]
