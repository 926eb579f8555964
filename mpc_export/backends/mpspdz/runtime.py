"""`mpc-export run` on an MP-SPDZ build: re-derive the build (as verify does), compile the program with
MP-SPDZ's compile.py, start the 3 parties on 127.0.0.1, each in its own run root holding only its own
files, and read the logits player 0 prints.

Run roots (under a fresh temporary directory, removed afterwards unless --keep):

  compile/                 the program and what compile.py writes (Programs/)
  party-<p>/Programs/      the compiled bytecode and schedule
  party-<p>/Player-Data/   P0.pem, P1.pem, P2.pem (every party's certificate), P<p>.key (its own key only),
                           the certificates' hash links; party 0 also Input-P0-0 (its private input)

Certificates are fresh for every run (self-signed, CN P<p>, as MP-SPDZ's Scripts/setup-ssl.sh makes them).
Every path comes from manifest entries ``rederive`` has just checked byte for byte; the program's name
must be an identifier."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError, VerificationFailed
from ...run.hand_off import IDENTIFIER, PARTIES
from ...run.lock import run_lock
from ...run.logs import fresh_directory
from ...run.processes import check_exits, free_port_base, no_core_dumps, stop, watch
from . import FOLDER, INPUT_FILE, PROTOCOLS, compile_flags, largest_bit_length

DEFAULT_TIMEOUT_S = 1800


@dataclass
class MpSpdzRunOptions:
    directory: Path
    runtime: Path
    execution: int | None = None
    timeout: float | None = None
    keep: bool = False
    trust_pickle: bool = False
    trust_torchscript: bool = False


@dataclass
class PartyReport:
    party: int
    exit_code: int
    peak_mb: int
    data_sent_mb: float | None  # MP-SPDZ's "Data sent" (this party)
    rounds: int | None  # its "~N rounds"
    files: list[str] = field(default_factory=list)  # what its run root held, relative to it


@dataclass
class MpSpdzRunResult:
    protocol: str
    wall_s: float  # the parties' wall time
    compile_s: float
    time_s: float | None  # MP-SPDZ's own "Time" (preprocessing included)
    global_data_mb: float | None  # "Global data sent" (all parties)
    logits: dict[int, dict[int, int]]
    log_path: Path
    parties: list[PartyReport]
    compiler: dict  # compile.py's "Program requires" counts and expected communication
    root: Path | None = None


def find_runtime(runtime: Path, protocol: str) -> Path:
    """The MP-SPDZ runtime directory (compile.py, Compiler/ and the protocol's VM), resolved."""
    runtime = Path(runtime).resolve()
    if not (runtime / "compile.py").is_file() or not (runtime / "Compiler").is_dir():
        raise UserError(f"{runtime}: no compile.py and Compiler/ (pass MP-SPDZ's directory, e.g. what ../shared/tools/mp-spdz/build prints)")
    vm = runtime / PROTOCOLS[protocol].vm
    if not vm.is_file() or not os.access(vm, os.X_OK):
        raise UserError(f"{runtime}: no executable {PROTOCOLS[protocol].vm} (the VM of protocol {protocol})")
    return runtime


def checked_files(manifest) -> tuple[str, str]:
    """(program path, player 0's input path), both relative to the build, both the build's own."""
    name = manifest.program.name
    if not IDENTIFIER.fullmatch(name):
        raise VerificationFailed(f"manifest.json: program name {name!r} is not an identifier")
    program = f"{FOLDER}/{name}.mpc"
    if manifest.program.path != program or [e.path for e in manifest.files_of_role("program")] != [program]:
        raise VerificationFailed(f"manifest.json: the program is not {program}")
    inputs = [e.path for e in manifest.files_of_role("mp_spdz_input")]
    if inputs != [f"{FOLDER}/{INPUT_FILE}"]:
        raise VerificationFailed(f"manifest.json: player 0's input is not {FOLDER}/{INPUT_FILE}")
    return program, inputs[0]


def checked_compile_flags(manifest, graph, fx, protocol: str) -> list[str]:
    """The manifest's compile.py flags, when they are the ones the checked build's declared steps give."""
    flags = [str(f) for f in manifest.backend_record.get("compile_flags", [])]
    expected = compile_flags(protocol, largest_bit_length(graph, fx))
    if flags != expected:
        raise VerificationFailed(f"manifest.json: mp_spdz.compile_flags {flags} are not the build's {expected}")
    return flags


def parse_compiler_output(text: str) -> dict:
    """compile.py's "Program requires" lines ({what: count}) and its expected communication (MB)."""
    counts, listing = {}, False
    for line in text.splitlines():
        if line.startswith("Program requires"):
            listing = True
            continue
        m = re.fullmatch(r"\s+(\d+) (.+?)\s*", line) if listing else None
        if m:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
        elif listing:
            listing = False
    m = re.search(r"Expected communication is ([0-9.e+-]+) MB online and ([0-9.e+-]+) MB offline", text)
    expected = {"online_mb": float(m.group(1)), "offline_mb": float(m.group(2))} if m else None
    return {"requires": counts, "expected_communication": expected}


def compile_program(runtime: Path, source: Path, workdir: Path, flags: list[str], timeout: float) -> tuple[dict, float]:
    """Compile ``source`` (copied into workdir) with compile.py; its counts and the seconds it took."""
    started, runtime = time.perf_counter(), Path(runtime)
    shutil.copyfile(source, workdir / source.name)
    try:
        done = subprocess.run([sys.executable, str(runtime / "compile.py"), *flags, source.name], cwd=workdir,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VerificationFailed(f"MP-SPDZ's compiler did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise VerificationFailed("MP-SPDZ's compiler failed: " + " | ".join(last))
    return parse_compiler_output(done.stdout), time.perf_counter() - started


def write_certificates(directory: Path) -> None:
    """P0..P2 .pem/.key: fresh self-signed certificates, CN P<p> (what MP-SPDZ's setup-ssl.sh makes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    for party in range(PARTIES):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"P{party}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
        (directory / f"P{party}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / f"P{party}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)


def _rehash(directory: Path) -> None:
    """The certificates' hash links MP-SPDZ's TLS looks them up by (``openssl rehash``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UserError("openssl not found: MP-SPDZ's parties find each other's certificates through `openssl rehash`")
    done = subprocess.run([openssl, "rehash", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"openssl rehash failed: {done.stderr.strip()[:200]}")


def party_root(root: Path, party: int, compiled: Path, certificates: Path, private_input: Path | None) -> Path:
    """party-<p>/ with the compiled program, every certificate, its own key, and (party 0) its input."""
    mine = root / f"party-{party}"
    shutil.copytree(compiled / "Programs", mine / "Programs")
    data = mine / "Player-Data"
    data.mkdir()
    for p in range(PARTIES):
        shutil.copyfile(certificates / f"P{p}.pem", data / f"P{p}.pem")
    shutil.copyfile(certificates / f"P{party}.key", data / f"P{party}.key")
    (data / f"P{party}.key").chmod(0o600)
    if private_input is not None:
        shutil.copyfile(private_input, data / "Input-P0-0")
    _rehash(data)
    return mine


def _files_of(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


STATS = {
    "data_sent": re.compile(r"Data sent = ([0-9.e+-]+) MB in ~(\d+) rounds"),
    "time": re.compile(r"^Time = ([0-9.e+-]+) seconds", re.M),
    "global": re.compile(r"Global data sent = ([0-9.e+-]+) MB"),
}


def start_parties(roots: list[Path], vm: Path, name: str, shamir: bool, timeout: float, log_dir: Path):
    """Start party p in roots[p] (output to log_dir/P<p>.log); wait, stop all on a failure or the timeout.
    Returns (exit codes, wall seconds, peak MB per party, log paths)."""
    port = free_port_base()
    procs, logs, handles = [], [], []
    started = time.perf_counter()
    try:
        for party, root in enumerate(roots):
            logs.append(log_dir / f"P{party}.log")
            handles.append(os.fdopen(os.open(logs[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb"))
            command = [str(vm), "-p", str(party), "-pn", str(port), "-h", "localhost", *(["-N", str(PARTIES)] if shamir else []), name]
            procs.append(subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=handles[-1], stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=no_core_dumps))
        timed_out, peaks = watch(procs, started, timeout, poll_s=0.05)
    finally:
        for p in procs:
            stop(p)
        for handle in handles:
            handle.close()
    wall = time.perf_counter() - started
    codes = [p.returncode for p in procs]
    check_exits(codes, timed_out, timeout, logs, "party", "parties")
    return codes, wall, peaks, logs


def run(opts: MpSpdzRunOptions, progress=print) -> MpSpdzRunResult:
    from .. import checked_build
    from ...verify.mpc_log import parse_mpc_log

    manifest, fx, graph, backend = checked_build(opts.directory, opts.trust_pickle, opts.trust_torchscript)
    if backend.name != "mp-spdz":
        raise UserError(f"{opts.directory} was built for {backend.runtime_name}, not MP-SPDZ (build it with --backend mp-spdz)")
    program, private_input = checked_files(manifest)
    protocol = backend.protocol
    runtime = find_runtime(opts.runtime, protocol)
    flags = checked_compile_flags(manifest, graph, fx, protocol)
    timeout = opts.timeout if opts.timeout is not None else DEFAULT_TIMEOUT_S
    with run_lock():
        root = Path(tempfile.mkdtemp(prefix="mpc-export-mpspdz-"))
        try:
            (root / "compile").mkdir()
            progress(f"compiling {Path(program).name} with MP-SPDZ's compiler ({' '.join(flags)})")
            compiler, compile_s = compile_program(runtime, opts.directory / program, root / "compile", flags, timeout)
            certificates = root / "certificates"
            certificates.mkdir(mode=0o700)
            write_certificates(certificates)
            roots = [party_root(root, p, root / "compile", certificates, opts.directory / private_input if p == 0 else None)
                     for p in range(PARTIES)]
            shutil.rmtree(certificates)  # each key now lives only in its party's root
            held = [_files_of(r) for r in roots]
            log_dir = fresh_directory(opts.directory / "run-logs", "run")
            progress(f"running 3 parties of {protocol} ({PROTOCOLS[protocol].security}) on 127.0.0.1, each in its own run "
                     f"root (party 0 holds the private input, parties 1 and 2 only the program and certificates); logs in {log_dir}")
            codes, wall, peaks, logs = start_parties(roots, runtime / PROTOCOLS[protocol].vm, manifest.program.name,
                                                     "shamir" in protocol, timeout, log_dir)
            texts = [log.read_text(errors="replace") for log in logs]
            reports = []
            for party, text in enumerate(texts):
                sent = STATS["data_sent"].search(text)
                reports.append(PartyReport(party, codes[party], peaks[party], float(sent.group(1)) if sent else None,
                                           int(sent.group(2)) if sent else None, held[party]))
            time_s, global_mb = STATS["time"].search(texts[0]), STATS["global"].search(texts[0])
            logits = parse_mpc_log(logs[0])
            if opts.execution is not None:
                logits = {k: v for k, v in logits.items() if k == opts.execution}
            return MpSpdzRunResult(protocol, wall, compile_s, float(time_s.group(1)) if time_s else None,
                                   float(global_mb.group(1)) if global_mb else None, logits, logs[0], reports, compiler,
                                   root if opts.keep else None)
        finally:
            if not opts.keep:
                shutil.rmtree(root, ignore_errors=True)
