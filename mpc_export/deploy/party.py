"""`mpc-export run DIR --hosts H0,H1,H2 --party P --certs CERTS`: start this machine's party only, for an
operator who holds the build (the model owner, player 0, or any party of a public-weights build) and the
certificate directory `mpc-export certs` wrote. It is `bundle` and that party's `run-player.sh`, with
run's log handling: the bundles are written to a temporary directory (the same checks as run and bundle:
the build re-derived, FANNG's published test certificates refused for any host but 127.0.0.1), the
party's script compiles and starts its player, whose output is streamed and filtered into a fresh
`DIR/run-logs/run-<n>/P<p>.log`; the program's runtime check is read from it. The other parties start
from their own bundles on their hosts."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import UserError, VerificationFailed
from ..run.hand_off import PARTIES
from ..run.lock import run_lock
from ..run.logs import FilteredLog, fresh_directory, tail
from ..backends.mamba.runtime import check_outcome, default_timeout, estimate_seconds, find_compiler, find_runtime
from .bundle import write_bundles


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the script and the player it became (its own session), SIGTERM then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(3)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_party(directory: Path, runtime: Path, compiler: Path | None, hosts: list[str], party: int, certs_dir: Path,
              port_base: int, timeout: float | None, trust_pickle: bool, trust_torchscript: bool, progress=print) -> Path:
    """Run party ``party`` of a three-host run on this machine; returns its (filtered) log. Refuses a
    runtime whose preprocessing the program's check rejected (UserError, the check's line)."""
    if party not in range(PARTIES):
        raise UserError(f"--party {party}: 0, 1 or 2")
    runtime_dir, _ = find_runtime(runtime)
    compiler_dir = find_compiler(runtime_dir, compiler)
    with tempfile.TemporaryDirectory(prefix="mpc-export-party-") as scratch:
        bundles = write_bundles(directory, Path(scratch) / "bundles", hosts, certs_dir, port_base,
                                trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
        from ..verify.integrity import read_manifest

        estimate = estimate_seconds(read_manifest(directory))
        limit = timeout if timeout is not None else default_timeout(estimate)
        with run_lock():
            log_dir = fresh_directory(directory / "run-logs", "run")
            log = log_dir / f"P{party}.log"
            progress(f"starting party {party} of {', '.join(hosts)} (port {port_base + party}); estimated "
                     f"{estimate / 60:.1f} min of player time, timeout {limit / 60:.0f} min; log {log}")
            proc = subprocess.Popen(["bash", str(bundles[party] / "run-player.sh"), str(runtime_dir), str(compiler_dir)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            reader = FilteredLog(proc.stdout, log)
            reader.start()
            started = time.monotonic()
            try:
                while proc.poll() is None and time.monotonic() - started < limit:
                    time.sleep(0.2)
            finally:
                timed_out = proc.poll() is None
                _stop_group(proc)
                reader.join(30)
    outcome = check_outcome(log)
    if outcome not in (None, "passed"):
        raise UserError(f"refused: {outcome}")
    if timed_out:
        raise VerificationFailed(f"timeout after {limit:.0f} s; party {party} stopped. Its last lines:\n{tail(log)}")
    if proc.returncode != 0:
        raise VerificationFailed(f"party {party} failed (exit {proc.returncode}); its last log lines:\n{tail(log)}")
    if party == 0 and outcome != "passed":
        raise VerificationFailed(f"the program's runtime check printed nothing (a program without it?); log: {log}")
    return log
