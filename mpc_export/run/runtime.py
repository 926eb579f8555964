"""`mpc-export run`: execute a build in an operator's FANNG-MPC installation, 3 players on 127.0.0.1.

Steps: check the build's integrity (nothing starts on a tampered file), compile the program to bytecode
with the MAMBA compiler, make one run root per player as on three hosts (links to the runtime's
PlayerBinary.x, Circuits, Cert-Store; a copy of its Data/ set-up; the compiled program), of which only
player 0's holds the build's data folder (the P0 files: FANNG's IO filesystem opens a channel's file on
every player, but only the inputting player 0 reads it), start the players with the IO answers on their
stdin, enforce the timeout, stop only the processes started here, delete the memory dumps, keep the
logs, and compare the logits the program prints with the reference (equal for exact truncation, within
the bound for probabilistic). Each player holds ~3.8 GB or more: runs are serialised by a lock file.
"""

from __future__ import annotations

import fcntl
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, VerificationFailed

PARTIES = 3
LOCK = Path(tempfile.gettempdir()) / "mpc-export-run.lock"

# compile-mamba.py recurses deeply on large programs: raise the limit and run it in a thread with a big stack
_COMPILE_BOOT = r"""
import runpy, sys, threading
sys.setrecursionlimit(20000)
threading.stack_size(512 * 1024 * 1024)
script, sys.argv = sys.argv[1], sys.argv[1:]
code = [0]
def main():
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code[0] = 1
worker = threading.Thread(target=main)
worker.start()
worker.join()
sys.exit(code[0])
"""


@dataclass
class RunOptions:
    directory: Path
    runtime: Path
    compiler: Path | None = None
    parties: int = 3
    execution: int | None = None
    timeout: float = 600.0
    log: Path | None = None
    keep: bool = False
    trust_pickle: bool = False
    trust_torchscript: bool = False


@dataclass
class RunResult:
    ok: bool
    wall_s: float
    compile_s: float
    logits: dict[int, dict[int, int]]
    log_path: Path | None
    peak_mb: list[int]
    data_files_per_player: list[int]  # files of the build's data folder in each player's run root
    root: Path | None = None  # the run roots' parent, when kept


def find_runtime(runtime: Path) -> tuple[Path, Path]:
    """(runtime dir, its Data set-up dir); refuses a directory that is not a FANNG-MPC installation."""
    runtime = runtime.resolve()
    if not (runtime / "PlayerBinary.x").is_file() or not os.access(runtime / "PlayerBinary.x", os.X_OK):
        raise UserError(f"{runtime}: no executable PlayerBinary.x (pass the FANNG-MPC installation directory)")
    for name in ("Cert-Store", "Circuits"):
        if not (runtime / name).is_dir():
            raise UserError(f"{runtime}: no {name}/ (the runtime's set-up is incomplete)")
    for name in ("Data", "Data-template"):
        if (runtime / name / "NetworkData.txt").is_file():
            return runtime, runtime / name
    raise UserError(f"{runtime}: no Data/NetworkData.txt (run the runtime's Setup first)")


def find_compiler(runtime: Path, compiler: Path | None) -> Path:
    for candidate in ([compiler] if compiler else [runtime, runtime.parent]):
        if candidate and (Path(candidate) / "compile-mamba.py").is_file():
            return Path(candidate).resolve()
    raise UserError(f"no compile-mamba.py in {compiler or runtime}; pass --compiler DIR (the MAMBA compiler's directory)")


def _free_port_base() -> int:
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


def _no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _peak_mb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _stop(proc: subprocess.Popen) -> None:
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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stage_compile_root(directory: Path, manifest: dict, data_setup: Path) -> Path:
    """A scratch root holding only the program and the runtime's set-up (the compiler reads the prime
    there), where the program is compiled to bytecode once for all players."""
    root = Path(tempfile.mkdtemp(prefix="mpc-export-run-"))
    name = manifest["program"]["name"]
    shutil.copytree(data_setup, root / "compile" / "Data", ignore=shutil.ignore_patterns("Memory-P*"))
    (root / "compile" / "Programs" / name).mkdir(parents=True)
    shutil.copy(directory / manifest["program"]["path"], root / "compile" / "Programs" / name / f"{name}.mpc")
    return root


def public_roles(manifest: dict) -> set[str]:
    """The file roles every player reads as public input: the parameters with --weights public, the
    sparsity pattern with --sparsity public."""
    roles = {"sparsity_pattern"}
    if manifest["protocol"].get("weights") == "public":
        roles.add("parameter")
    return roles


def player_root(root: Path, player: int, directory: Path, manifest: dict, runtime: Path, data_setup: Path) -> Path:
    """Player p's own run root, as on its own host: the runtime's set-up and the compiled program; the
    build's data folder (the P0 files) only for player 0; players 1 and 2 get the files every player reads
    as public input (public_roles), never the input."""
    mine = root / f"P{player}"
    mine.mkdir()
    for name in ("PlayerBinary.x", "Circuits", "Cert-Store"):
        (mine / name).symlink_to(runtime / name)
    shutil.copytree(data_setup, mine / "Data", ignore=shutil.ignore_patterns("Memory-P*"))
    if player == 0:
        shutil.copytree(directory / manifest["data_folder"], mine / "Data" / manifest["data_folder"])
    else:
        public = public_roles(manifest)
        for entry in manifest["files"]:
            if entry["role"] in public:
                (mine / "Data" / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(directory / entry["path"], mine / "Data" / entry["path"])
    shutil.copytree(root / "compile" / "Programs", mine / "Programs")
    return mine


def data_files(root: Path, manifest: dict) -> int:
    folder = root / "Data" / manifest["data_folder"]
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def compile_bytecode(root: Path, name: str, compiler: Path) -> float:
    log = root / "compile.log"
    env = dict(os.environ, PYTHONPATH=str(compiler), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    with open(log, "wb") as out:
        code = subprocess.call([sys.executable, "-c", _COMPILE_BOOT, str(compiler / "compile-mamba.py"), "-n", "-r", "-s",
                                f"Programs/{name}"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if code != 0 or not (root / "Programs" / name / f"{name}.sch").is_file():
        raise VerificationFailed(f"the MAMBA compiler failed on {name} (exit {code}):\n{_tail(log, 12)}")
    return time.perf_counter() - started


def start_players(roots: list[Path], name: str, answers: Path, timeout: float) -> tuple[list[int], float, list[int], list[Path]]:
    """Start player p in roots[p] with the IO answers on its stdin; wait, stop on failure or timeout."""
    port = _free_port_base()
    procs, logs, inputs, peaks = [], [], [], [0] * PARTIES
    started = time.perf_counter()
    failed_at = None
    timed_out = False
    try:
        for player in range(PARTIES):
            root = roots[player]
            logs.append(root / f"P{player}.log")
            inputs.append(open(answers, "rb"))
            with open(logs[-1], "wb") as out:
                procs.append(subprocess.Popen([str(root / "PlayerBinary.x"), "-pnb", str(port), str(player), f"Programs/{name}"],
                                              cwd=root, stdin=inputs[-1], stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True, preexec_fn=_no_core_dumps))
        while True:
            codes = [p.poll() for p in procs]
            for i, p in enumerate(procs):
                if codes[i] is None:
                    peaks[i] = max(peaks[i], _peak_mb(p.pid))
            if all(c is not None for c in codes):
                break
            now = time.perf_counter()
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = now  # the others would wait for the failed player forever
            if failed_at is not None and now - failed_at > 5:
                break
            if now - started > timeout:
                timed_out = True
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            _stop(p)
        for handle in inputs:
            handle.close()
    codes = [p.returncode for p in procs]
    wall = time.perf_counter() - started
    if timed_out:
        raise VerificationFailed(f"timeout after {timeout:.0f} s; players stopped. Player 0's last lines:\n{_tail(logs[0])}")
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        first = bad[0]
        raise VerificationFailed(f"player {first} failed (exit {codes[first]}); its last log lines:\n{_tail(logs[first])}")
    return codes, wall, peaks, logs


def run(opts: RunOptions, progress=print) -> RunResult:
    from ..verify.mpc_log import parse_mpc_log
    from ..verify.rederive import rederive
    from ..verify.reference import load_reference

    if opts.parties != PARTIES:
        raise UserError(f"--parties {opts.parties}: only the runtime's 3-party Shamir set-up is supported")
    # the same checks as verify, before any player starts: a file that is not what the model and the
    # recorded options produce (tampered, unlisted, outside the directory) stops the run here
    manifest, fx, graph, parsed, _ = load_reference(opts.directory, None, opts.trust_pickle, opts.trust_torchscript)
    rederive(opts.directory, manifest, graph, fx, parsed)
    runtime, data_setup = find_runtime(opts.runtime)
    compiler = find_compiler(runtime, opts.compiler)
    name = manifest["program"]["name"]
    LOCK.touch(exist_ok=True)
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError("another mpc-export run is in progress (each needs ~11.5 GB); wait for it to finish") from None
        root = stage_compile_root(opts.directory, manifest, data_setup)
        try:
            progress(f"compiling {name} to bytecode")
            compile_s = compile_bytecode(root / "compile", name, compiler)
            roots = [player_root(root, p, opts.directory, manifest, runtime, data_setup) for p in range(PARTIES)]
            held = [data_files(r, manifest) for r in roots]
            progress(f"running {PARTIES} players on 127.0.0.1, each in its own run root; the P0 files "
                     f"({held[0]}) are in player 0's only")
            try:
                _, wall, peaks, logs = start_players(roots, name, opts.directory / "io_answers.txt", opts.timeout)
            finally:
                for r in roots:
                    for dump in (r / "Data").glob("Memory-P*"):
                        dump.unlink()
                saved = opts.log or (opts.directory / "run-logs" / "P0.log")
                saved.parent.mkdir(parents=True, exist_ok=True)
                for p, r in enumerate(roots):
                    log = r / f"P{p}.log"
                    if log.exists():
                        shutil.copy(log, saved if p == 0 else saved.parent / log.name)
            logits = parse_mpc_log(saved)
            if opts.execution is not None:
                logits = {k: v for k, v in logits.items() if k == opts.execution}
            return RunResult(True, wall, compile_s, logits, saved, peaks, held, root if opts.keep else None)
        finally:
            if not opts.keep:
                shutil.rmtree(root, ignore_errors=True)
