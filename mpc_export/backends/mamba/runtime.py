"""`mpc-export run`: execute a build in an operator's FANNG-MPC installation, 3 players on 127.0.0.1.

Steps: check the build's integrity (nothing starts on a tampered file; every path used afterwards comes
from the manifest entries just checked, hand_off.py), compile the program to bytecode with the MAMBA
compiler, make one run root per player as on three hosts (links to the runtime's PlayerBinary.x,
Circuits, Cert-Store; a copy of its Data/ set-up; the compiled program; the build files that party
receives: FANNG's IO filesystem opens a channel's file on every player, but only the inputting player 0
reads it), start the players with the IO answers on their stdin, stream and filter their output into a
fresh log directory, enforce the timeout (by default from the cost estimate), stop only the processes
started here, delete the memory dumps, refuse a runtime whose preprocessing the program's own check
rejected (runtime_check.py), and compare the logits the program prints with the reference
(equal for exact truncation, within the bound for probabilistic). Each player holds up to ~6.4 GB (the seed's measured peak): runs are
serialised by a per-user lock (lock.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import runtime_check
from ...errors import UserError, VerificationFailed
from ...manifest import Manifest
from ...run.hand_off import PARTIES, HandOff, hand_off
from ...run.lock import run_lock
from ...run.logs import FilteredLog, fresh_directory, tail
from ...run.processes import check_exits, free_port_base as _free_port_base, no_core_dumps as _no_core_dumps, stop as _stop, watch

# The fit of real runs on the secure runtime (benchmarks/results/runtime_fit.json, this repository's 2-core
# machine, 3 players on 127.0.0.1): the players' time is about FIXED_S, plus S_PER_UNIT per triple or random
# bit the program consumes, plus S_PER_ROUND per network round trip (the cost report's rounds).
FIXED_S = 36.3
S_PER_UNIT = 12.38e-6
S_PER_ROUND = 283.7e-6

# compile-mamba.py recurses deeply on large programs: raise the limit and run it in a thread with a big stack
# (also embedded in each bundle's run-player.sh)
COMPILE_BOOT = r"""import runpy, sys, threading
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
    timeout: float | None = None  # None: from the build's cost estimate (default_timeout)
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
    runtime_check: str  # "passed" (the program's check of its runtime's preprocessing)
    estimate_s: float  # the cost estimate printed before the start
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


def estimate_seconds(manifest: Manifest) -> float:
    """The players' time the build's cost report predicts (the fit above), every execution and the
    once-per-program rows (the runtime check, the parameters' input) included."""
    cost = manifest.cost
    once = set(cost.get("once_per_program", []))
    executions = max(1, len(manifest.executions))

    def total(key: str) -> int:
        return sum(row[key] * (1 if row["node"] in once else executions) for row in cost["layers"])

    return FIXED_S + S_PER_UNIT * (total("triples") + total("bits")) + S_PER_ROUND * total("rounds")


def default_timeout(estimate_s: float) -> float:
    """Three times the estimate plus start-up, at least 10 minutes: the fit's residual is ~15 s, but a loaded
    machine runs slower."""
    return max(600.0, 3 * estimate_s + 120)


def stage_compile_root(directory: Path, files: HandOff, data_setup: Path) -> Path:
    """A scratch root holding only the program and the runtime's set-up (the compiler reads the prime
    there), where the program is compiled to bytecode once for all players."""
    root = Path(tempfile.mkdtemp(prefix="mpc-export-run-"))
    name = files.program_name
    shutil.copytree(data_setup, root / "compile" / "Data", ignore=shutil.ignore_patterns("Memory-P*"))
    (root / "compile" / "Programs" / name).mkdir(parents=True)
    shutil.copyfile(directory / files.program, root / "compile" / "Programs" / name / f"{name}.mpc", follow_symlinks=False)
    return root


def player_root(root: Path, player: int, directory: Path, files: HandOff, runtime: Path, data_setup: Path) -> Path:
    """Player p's own run root, as on its own host: the runtime's set-up, the compiled program and exactly
    the build files the hand-off gives that player (hand_off.py: player 0 its parameters, pattern and
    inputs, never the expected outputs; players 1 and 2 only what every player reads as public input)."""
    mine = root / f"P{player}"
    mine.mkdir()
    for name in ("PlayerBinary.x", "Circuits", "Cert-Store"):
        (mine / name).symlink_to(runtime / name)
    shutil.copytree(data_setup, mine / "Data", ignore=shutil.ignore_patterns("Memory-P*"))
    for path in files.data_files[player]:
        (mine / "Data" / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / path, mine / "Data" / path, follow_symlinks=False)
    shutil.copytree(root / "compile" / "Programs", mine / "Programs")
    return mine


def data_files(root: Path, files: HandOff) -> int:
    folder = root / "Data" / files.data_folder
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def compile_bytecode(root: Path, name: str, compiler: Path) -> float:
    log = root / "compile.log"
    env = dict(os.environ, PYTHONPATH=str(compiler), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    with open(log, "wb") as out:
        code = subprocess.call([sys.executable, "-c", COMPILE_BOOT, str(compiler / "compile-mamba.py"), "-n", "-r", "-s",
                                f"Programs/{name}"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if code != 0 or not (root / "Programs" / name / f"{name}.sch").is_file():
        raise VerificationFailed(f"the MAMBA compiler failed on {name} (exit {code}):\n{tail(log, 12)}")
    return time.perf_counter() - started


def check_outcome(log: Path) -> str | None:
    """The runtime check's outcome in a (filtered) player-0 log: "passed", the failure line, or None."""
    try:
        with open(log, errors="replace") as lines:
            return runtime_check.outcome(lines)
    except OSError:
        return None


def start_players(roots: list[Path], name: str, answers: Path, timeout: float, log_dir: Path) -> tuple[list[int], float, list[int], list[Path]]:
    """Start player p in roots[p] with the IO answers on its stdin, its output streamed and filtered into
    log_dir/P<p>.log; wait, stop on failure or timeout. A runtime the program's check refused is reported
    with the check's line (UserError)."""
    port = _free_port_base()
    procs, logs, inputs, readers = [], [], [], []
    started = time.perf_counter()
    try:
        for player in range(PARTIES):
            root = roots[player]
            logs.append(log_dir / f"P{player}.log")
            inputs.append(open(answers, "rb"))
            procs.append(subprocess.Popen([str(root / "PlayerBinary.x"), "-pnb", str(port), str(player), f"Programs/{name}"],
                                          cwd=root, stdin=inputs[-1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=_no_core_dumps))
            readers.append(FilteredLog(procs[-1].stdout, logs[-1]))
            readers[-1].start()
        timed_out, peaks = watch(procs, started, timeout)
    finally:
        for p in procs:
            _stop(p)
        for handle in inputs:
            handle.close()
        for reader in readers:
            reader.join(30)
    codes = [p.returncode for p in procs]
    wall = time.perf_counter() - started
    outcome = check_outcome(logs[0])
    if outcome not in (None, "passed"):
        raise UserError(f"refused: {outcome}")
    check_exits(codes, timed_out, timeout, logs, "player", "players")
    if outcome != "passed":
        raise VerificationFailed(f"the program's runtime check printed nothing (a program without it?); player 0's log: {logs[0]}")
    return codes, wall, peaks, logs


def run(opts: RunOptions, progress=print) -> RunResult:
    from .. import checked_build
    from ...verify.mpc_log import parse_mpc_log

    if opts.parties != PARTIES:
        raise UserError(f"--parties {opts.parties}: only the runtime's 3-party Shamir set-up is supported")
    # the same checks as verify, before any player starts: a file that is not what the model and the
    # recorded options produce (tampered, unlisted, outside the directory) stops the run here; every path
    # used below comes from the entries just checked
    manifest, fx, graph, _ = checked_build(opts.directory, opts.trust_pickle, opts.trust_torchscript)
    files = hand_off(manifest)
    runtime, data_setup = find_runtime(opts.runtime)
    compiler = find_compiler(runtime, opts.compiler)
    name = files.program_name
    estimate = estimate_seconds(manifest)
    timeout = opts.timeout if opts.timeout is not None else default_timeout(estimate)
    with run_lock():
        root = stage_compile_root(opts.directory, files, data_setup)
        try:
            progress(f"compiling {name} to bytecode")
            compile_s = compile_bytecode(root / "compile", name, compiler)
            roots = [player_root(root, p, opts.directory, files, runtime, data_setup) for p in range(PARTIES)]
            held = [data_files(r, files) for r in roots]
            log_dir = fresh_directory(opts.directory / "run-logs", "run")
            progress(f"running {PARTIES} players on 127.0.0.1, each in its own run root (player 0 holds {held[0]} build "
                     f"file(s), players 1 and 2 {held[1]}); estimated {estimate / 60:.1f} min of player time from the cost "
                     f"report, timeout {timeout / 60:.0f} min; logs in {log_dir}")
            try:
                _, wall, peaks, logs = start_players(roots, name, opts.directory / files.answers, timeout, log_dir)
            finally:
                for r in roots:
                    for dump in (r / "Data").glob("Memory-P*"):
                        dump.unlink()
            logits = parse_mpc_log(logs[0])
            if opts.execution is not None:
                logits = {k: v for k, v in logits.items() if k == opts.execution}
            return RunResult(True, wall, compile_s, logits, logs[0], peaks, held, "passed", estimate, root if opts.keep else None)
        finally:
            if not opts.keep:
                shutil.rmtree(root, ignore_errors=True)
