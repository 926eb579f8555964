"""Signals: Ctrl-C (SIGINT) exits 130 with one line, SIGTERM 143; either leaves nothing half-written
(sent while the build is writing its staged directory)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SEED_MODEL


def _default_signals():
    """The child's SIGINT / SIGTERM as a terminal gives them: a shell starting the tests in the background
    sets SIGINT to ignored, and Python then installs no Ctrl-C handler (the test would see exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_build_leaves_nothing_half_written(sig, code, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "from mpc_export.cli.main import main; main()", "build", str(SEED_MODEL),
                             "--out", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")), preexec_fn=_default_signals)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    assert proc.poll() is None, "the build finished before the signal could be sent"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert len(stderr.strip().splitlines()) == 1 and "nothing half-written" in stderr, stderr
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
