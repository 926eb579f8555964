"""Shared fixtures. ../shared (beside the project) holds trained models, data and the MAMBA compiler;
tests that need it skip with a message when it is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED_MODEL = ROOT / "examples" / "pruned_resnet_cifar10.pth"
COMPILER = SHARED / "tools" / "mamba-compile"
DATASET = SHARED / "fixtures" / "cifar10_test.npz"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that need ../shared skip without it)")
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `mpc-export ARGS` in-process; return (exit code, stdout, stderr)."""
    from mpc_export.cli.main import main

    old = sys.argv
    sys.argv = ["mpc-export", *[str(a) for a in args]]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory):
    """The seed model built once with two real CIFAR-10 images (or the demo image without ../shared)."""
    from mpc_export.pipeline.build import BuildOptions, build

    out = tmp_path_factory.mktemp("seed") / "out"
    inputs = []
    images = SHARED / "fixtures"
    if images.exists():
        inputs = [images / "image_1.pt", images / "image_2.pt"]
    manifest = build(BuildOptions(model=SEED_MODEL, out=out, inputs=inputs))
    return out, manifest


def built_runtime(variable: str, build_script: Path, what: str, timeout: int, extra_env: dict | None = None) -> str:
    """A runtime directory: $``variable`` when set, else what ``build_script`` (under ../shared, built once
    and cached there) prints last; skips with the build's last words when it cannot be built here."""
    if os.environ.get(variable):
        return os.environ[variable]
    build = need_shared(build_script)
    proc = subprocess.run([str(build)], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(extra_env or {})})
    if proc.returncode != 0:
        pytest.skip(f"{what} could not be built here: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def runtime():
    """The FANNG-MPC runtime (secure build), from $FANNG_RUNTIME or built once from ../shared."""
    return built_runtime("FANNG_RUNTIME", SHARED / "tools" / "fanng-runtime" / "build", "the FANNG-MPC runtime", 900)


@pytest.fixture(scope="session")
def mp_spdz():
    """MP-SPDZ's runtime directory, from $MPSPDZ_RUNTIME or built once (cached) from ../shared."""
    return built_runtime("MPSPDZ_RUNTIME", SHARED / "tools" / "mp-spdz" / "build", "MP-SPDZ", 1800)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")


# ---- three hosts on one machine: Linux network namespaces (root only)

def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Namespaces:
    """Three player namespaces and one bridge namespace, named uniquely; ``close`` removes all four (and
    with them every veth and the bridge)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.players = [f"mpcx-{tag}-p{p}" for p in range(3)]
        self.bridge = f"mpcx-{tag}-br"
        subnet = 100 + int(tag[:2], 16) % 100  # 10.<subnet>.77.0/24, private and only inside the namespaces
        self.addresses = [f"10.{subnet}.77.{p + 1}" for p in range(3)]
        self.created = []

    def open(self):
        for name in [self.bridge, *self.players]:
            _ip("netns", "add", name)
            self.created.append(name)
        _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge, "link", "set", "br0", "up")
        for p, (name, address) in enumerate(zip(self.players, self.addresses)):
            _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{p}", "netns", self.bridge)
            _ip("-n", self.bridge, "link", "set", f"port{p}", "master", "br0", "up")
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
        return self

    def run(self, commands: list[list[str]], out_dir: Path, timeout: float) -> tuple[list[int], list[str]]:
        """Run commands[p] in player p's namespace, its output in out_dir/P<p>.out; wait until all end, 5 s
        after one fails, or ``timeout``; kill what is left (process groups). (exit codes, outputs)."""
        import time

        procs, logs = [], []
        try:
            for p, (name, command) in enumerate(zip(self.players, commands)):
                logs.append(open(out_dir / f"P{p}.out", "wb"))
                procs.append(subprocess.Popen(["ip", "netns", "exec", name, *command], stdout=logs[-1], stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
                if any(proc.poll() not in (None, 0) for proc in procs):
                    time.sleep(5)
                    break
                time.sleep(0.5)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, 9)
                    proc.wait()
            for log in logs:
                log.close()
        return [proc.returncode for proc in procs], [(out_dir / f"P{p}.out").read_text(errors="replace") for p in range(len(procs))]

    def close(self):
        for name in reversed(self.created):
            _ip("netns", "del", name, check=False)


@pytest.fixture
def namespaces():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("three-host test: needs root and iproute2's `ip netns` (not permitted here)")
    probe = f"mpcx-probe-{uuid.uuid4().hex[:8]}"
    proc = _ip("netns", "add", probe, check=False)
    if proc.returncode != 0:
        pytest.skip(f"three-host test: `ip netns add` is not permitted here ({proc.stderr.strip()})")
    _ip("netns", "del", probe, check=False)
    spaces = Namespaces()
    try:
        yield spaces.open()
    finally:
        spaces.close()
        left = _ip("netns", "list", check=False).stdout
        assert not any(name in left for name in [spaces.bridge, *spaces.players])
