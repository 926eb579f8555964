"""The players' processes, whatever the runtime: free ports on 127.0.0.1, no core dumps (a player's memory
holds secrets), peak memory, and stopping only the processes started here (by PID)."""

from __future__ import annotations

import os
import random
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import UserError, VerificationFailed
from .hand_off import PARTIES
from .logs import tail


def free_port_base() -> int:
    """Three consecutive free ports below the kernel's ephemeral range (the players' own outgoing
    connections use ephemeral ports)."""
    lo = 32768
    try:
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError):
        pass
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = rng.randrange(10000, max(10001, lo - PARTIES))
        try:
            for port in range(base, base + PARTIES):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise UserError("no three free ports found on 127.0.0.1")


def no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def peak_mb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def stop(proc: subprocess.Popen) -> None:
    """Stop one player started here, by its PID only: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(3)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait()


def watch(procs: list, started: float, timeout: float, poll_s: float = 0.1) -> tuple[bool, list[int]]:
    """Wait for the players ``procs`` (started at ``started``, time.perf_counter): until all have exited,
    5 s after one failed (the others would wait for it forever), or ``timeout`` seconds after the start.
    Returns (timed out, peak memory in MB per player, sampled while each ran). Stops nothing: the caller
    stops the processes it started."""
    peaks = [0] * len(procs)
    failed_at = None
    while True:
        codes = [p.poll() for p in procs]
        for i, p in enumerate(procs):
            if codes[i] is None:
                peaks[i] = max(peaks[i], peak_mb(p.pid))
        if all(c is not None for c in codes):
            return False, peaks
        now = time.perf_counter()
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = now
        if failed_at is not None and now - failed_at > 5:
            return False, peaks
        if now - started > timeout:
            return True, peaks
        time.sleep(poll_s)


def check_exits(codes: list, timed_out: bool, timeout: float, logs: list[Path], who: str, plural: str) -> None:
    """After ``watch``: VerificationFailed on a timeout (naming the first one's last log lines) or on the
    first ``who`` ("player", plural "players"; "party", "parties") that exited non-zero (its last lines)."""
    if timed_out:
        raise VerificationFailed(f"timeout after {timeout:.0f} s; {plural} stopped. {who.capitalize()} 0's last lines:\n{tail(logs[0])}")
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        first = bad[0]
        raise VerificationFailed(f"{who} {first} failed (exit {codes[first]}); its last log lines:\n{tail(logs[first])}")
