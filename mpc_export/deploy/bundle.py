"""Per-player deployment bundles: ``out/player-0/``, ``out/player-1/``, ``out/player-2/``, each holding
exactly what that party receives (docs/operator.md, "Deployment: what each party receives"), to be copied to that
player's host and started there with ``./run-player.sh RUNTIME_DIR [COMPILER_DIR]``.

| bundle file                                   | player-0 (model owner, input)    | player-1, player-2                |
| --------------------------------------------- | -------------------------------- | --------------------------------- |
| ``Programs/<name>/<name>.mpc`` (the program)  | yes                              | yes                               |
| ``io_answers.txt`` (channel paths only)       | yes                              | yes                               |
| ``Data/<Name>Data/all_parameters/...``        | yes                              | only with ``--weights public``    |
| ``Data/<Name>Data/all_parameters/sparsity/``  | yes (``--sparsity public``)      | yes (``--sparsity public``)       |
| ``Data/<Name>Data/Inputs/`` (the image)       | yes                              | never                             |
| ``<Name>Data/Outputs/`` (expected activations)| no                               | no                                |
| ``manifest.json``                             | no                               | no                                |
| ``NetworkData.txt`` (the 3 hosts, cert names) | yes                              | yes                               |
| ``Cert-Store/RootCA.crt``, ``Player1-3.crt``  | yes                              | yes                               |
| ``Cert-Store/Player<p+1>.key`` (mode 0600)    | its own only                     | its own only                      |
| ``run-player.sh``, ``FILES.sha256``           | yes                              | yes                               |

The selection is ``run.hand_off`` (the rule ``mpc-export run`` uses). Players 1 and 2 receive the files
whose manifest role is in ``public_roles`` (the parameters with public weights, the sparsity pattern with
public sparsity), never an input: FANNG's IO filesystem opens every channel's path on every player but
only the inputting player 0 reads it. Nobody receives the root CA's key, another player's key, the
expected outputs or the manifest.

``run-player.sh`` is one fixed text in which only the player number, the port base (integers) and the
program name (checked against ``^[A-Za-z_][A-Za-z0-9_]*$``) vary. It checks FILES.sha256, makes the
run root ``run/`` beside itself (refusing an existing one), links RUNTIME_DIR's PlayerBinary.x and
Circuits, copies the runtime's shared set-up (SharingData.txt, SharingData2.txt and
ConversionCircuit-LSSS_to_GC.txt when present) and only this player's MKey-<p>.key and
StorageConfig-P<p>.txt, then the bundle's NetworkData.txt (as Data/NetworkData.txt), Cert-Store, Data
and Programs; compiles the program there with ``compile-mamba.py -n -r -s`` (a raised recursion limit
and a 512 MB thread stack, as ``mpc-export run``) and execs ``./PlayerBinary.x -pnb PORT_BASE p
Programs/<name>`` with io_answers.txt on its stdin. Every player compiles the same program: use the same
compiler version on the three hosts. (This compiler is not byte-deterministic: two compilations of one
program gave the same opcode sequence and schedule with other register numbers.)

``FILES.sha256`` lists every other file of the bundle (sha256sum format, sorted by path);
:func:`check_bundle` re-hashes a bundle and lists what is missing, changed, unlisted, a symbolic link or
outside it, and a bundle holding more than its own key or a key others can read.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError, VerificationFailed
from ..export.writer import sha256_file
from ..manifest import FileEntry, Manifest
from ..run.hand_off import IDENTIFIER
from ..backends.mamba.runtime import COMPILE_BOOT
from .certs import (PARTIES, ROOT_CERT_FILE, write_new, load_certificates, is_published_test_certificate, player_cert_file,
                    player_common_name, player_key_file, validate_hosts)

LOOPBACK = "127.0.0.1"
FILE_LIST = "FILES.sha256"
SCRIPT = "run-player.sh"
NETWORK_DATA = "NetworkData.txt"
RUN_ROOT = "run"
# every path a bundle holds: plain names joined by '/', so FILES.sha256 needs no escaping
SAFE_PATH = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
LIST_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
PORT_MIN, PORT_MAX = 1024, 65535 - (PARTIES - 1)

_SCRIPT_TEMPLATE = r"""#!/usr/bin/env bash
# run-player.sh: start this bundle's player of a 3-party FANNG-MPC run (written by mpc-export).
#
#   ./run-player.sh RUNTIME_DIR [COMPILER_DIR]
#
# RUNTIME_DIR: the FANNG-MPC installation (PlayerBinary.x, Circuits/ and its set-up in Data/ or
# Data-template/: SharingData.txt, MKey-<p>.key, StorageConfig-P<p>.txt). COMPILER_DIR: the MAMBA
# compiler's directory (compile-mamba.py; default RUNTIME_DIR); PYTHON: the Python running it (python3).
# Checks FILES.sha256, makes the run root run/ beside this script (refuses an existing one), compiles the
# program there and starts the player with io_answers.txt on its stdin. The other players start the same
# way on their hosts (NetworkData.txt); player p listens on PORT_BASE + p.
set -euo pipefail

PLAYER=@PLAYER@
PORT_BASE=@PORT_BASE@
PROGRAM=@PROGRAM@

die() { echo "run-player.sh: $*" >&2; exit 2; }
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || die "usage: run-player.sh RUNTIME_DIR [COMPILER_DIR]"
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
[ -d "$1" ] || die "$1: no such directory (the FANNG-MPC installation)"
RUNTIME=$(cd -- "$1" && pwd -P)
COMPILER_ARG=${2:-$1}
[ -d "$COMPILER_ARG" ] || die "$COMPILER_ARG: no such directory (the MAMBA compiler)"
COMPILER=$(cd -- "$COMPILER_ARG" && pwd -P)
PYTHON=${PYTHON:-python3}

[ -x "$RUNTIME/PlayerBinary.x" ] || die "$RUNTIME: no executable PlayerBinary.x"
[ -d "$RUNTIME/Circuits" ] || die "$RUNTIME: no Circuits/"
[ -f "$COMPILER/compile-mamba.py" ] || die "$COMPILER: no compile-mamba.py (pass COMPILER_DIR)"
SETUP=
for candidate in Data Data-template; do
  if [ -f "$RUNTIME/$candidate/SharingData.txt" ]; then SETUP=$RUNTIME/$candidate; break; fi
done
[ -n "$SETUP" ] || die "$RUNTIME: no Data/SharingData.txt (run the runtime's set-up first)"
for f in "MKey-$PLAYER.key" "StorageConfig-P$PLAYER.txt"; do
  [ -f "$SETUP/$f" ] || die "$SETUP: no $f"
done

cd -- "$HERE"
sha256sum --check --strict --quiet FILES.sha256 >&2 || die "the bundle's files differ from FILES.sha256: not starting"
if [ -e run ] || [ -L run ]; then die "$HERE/run exists (an earlier run's root): move it away first"; fi

umask 077
mkdir run
ln -s "$RUNTIME/PlayerBinary.x" run/PlayerBinary.x
ln -s "$RUNTIME/Circuits" run/Circuits
mkdir run/Data
for f in SharingData.txt SharingData2.txt ConversionCircuit-LSSS_to_GC.txt; do
  if [ -f "$SETUP/$f" ]; then cp -- "$SETUP/$f" run/Data/; fi
done
cp -- "$SETUP/MKey-$PLAYER.key" "$SETUP/StorageConfig-P$PLAYER.txt" run/Data/
cp -- NetworkData.txt run/Data/NetworkData.txt
cp -R -- Cert-Store run/Cert-Store
if [ -d Data ]; then cp -R -- Data/. run/Data/; fi
cp -R -- Programs run/Programs

cd run
BOOT=$(cat <<'PYTHON_BOOT'
@BOOT@
PYTHON_BOOT
)
echo "run-player.sh: compiling $PROGRAM (log: $HERE/run/compile.log)" >&2
if ! PYTHONPATH="$COMPILER" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
     "$PYTHON" -c "$BOOT" "$COMPILER/compile-mamba.py" -n -r -s "Programs/$PROGRAM" > compile.log 2>&1 \
   || [ ! -f "Programs/$PROGRAM/$PROGRAM.sch" ]; then
  tail -n 20 compile.log >&2
  die "the MAMBA compiler failed on $PROGRAM"
fi
echo "run-player.sh: starting player $PLAYER (ports from $PORT_BASE)" >&2
exec ./PlayerBinary.x -pnb "$PORT_BASE" "$PLAYER" "Programs/$PROGRAM" < "$HERE/io_answers.txt"
"""


def check_program_name(name) -> str:
    """The program name, the only build-derived string run-player.sh holds: ^[A-Za-z_][A-Za-z0-9_]*$."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise UserError(f"program name {str(name)[:60]!r}: not an identifier ([A-Za-z_][A-Za-z0-9_]*); refusing to "
                        f"write it into run-player.sh")
    return name


def check_port_base(port_base) -> int:
    if not isinstance(port_base, int) or isinstance(port_base, bool) or not PORT_MIN <= port_base <= PORT_MAX:
        raise UserError(f"port base {port_base!r}: a whole number from {PORT_MIN} to {PORT_MAX} "
                        f"(player p listens on port base + p)")
    return port_base


def network_data(hosts: list[str]) -> str:
    """Data/NetworkData.txt as FANNG's SystemData reads it: the root CA's certificate file, the number of
    players, one line per player (number, host, certificate file, certificate common name), then the
    fake-offline and fake-sacrifice switches, both 0 (real preprocessing), as the shipped file has."""
    hosts = validate_hosts(hosts)
    lines = [ROOT_CERT_FILE, str(PARTIES)]
    lines += [f"{p} {host} {player_cert_file(p)} {player_common_name(p)}" for p, host in enumerate(hosts)]
    lines += ["0", "0"]
    return "\n".join(lines) + "\n"


def run_player_script(player: int, program: str, port_base: int) -> str:
    """run-player.sh for ``player``: the fixed template with the player number, the port base and the
    validated program name filled in."""
    if player not in range(PARTIES):
        raise UserError(f"player {player!r}: 0, 1 or 2")
    text = (_SCRIPT_TEMPLATE.replace("@PLAYER@", str(player)).replace("@PORT_BASE@", str(check_port_base(port_base)))
            .replace("@PROGRAM@", check_program_name(program)).replace("@BOOT@", COMPILE_BOOT.strip()))
    assert "@" not in text.replace("${BASH_SOURCE[0]}", "")
    return text


def _check_certificates(certs_dir: Path, allow_test_certificates: bool) -> dict[str, bytes]:
    """The certificate files a bundle needs from ``certs_dir``, checked as FANNG will use them: each
    player certificate issued and signed by RootCA.crt, its subject CN P1..P3 (what NetworkData.txt
    names), currently valid, its key (unencrypted PEM) matching; not FANNG's published test certificates.
    Returns file name -> bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    certs_dir = Path(certs_dir)
    if not certs_dir.is_dir():
        raise UserError(f"{certs_dir}: no such certificate directory (make one with mpc-export certs)")
    names = [ROOT_CERT_FILE] + [player_cert_file(p) for p in range(PARTIES)] + [player_key_file(p) for p in range(PARTIES)]
    contents = {}
    for name in names:
        path = certs_dir / name
        if not path.is_file():
            raise UserError(f"{path}: missing (a certificate directory holds {', '.join(names)})")
        contents[name] = path.read_bytes()
    now = datetime.datetime.now(datetime.timezone.utc)
    parsed = {}
    for name in [ROOT_CERT_FILE] + [player_cert_file(p) for p in range(PARTIES)]:
        found = load_certificates(certs_dir / name)
        if len(found) != 1:
            raise UserError(f"{certs_dir / name}: {len(found)} certificates, expected one")
        if not allow_test_certificates and is_published_test_certificate(certs_dir / name):
            raise UserError(f"{certs_dir / name} is one of FANNG-MPC's published test certificates (its private key "
                            f"is public, so it authenticates nobody): refused for hosts other than {LOOPBACK}; make "
                            f"new ones with mpc-export certs")
        cert = found[0]
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise UserError(f"{certs_dir / name}: not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                            f"{cert.not_valid_after_utc:%Y-%m-%d})")
        parsed[name] = cert
    root = parsed[ROOT_CERT_FILE]
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise UserError(f"{certs_dir / ROOT_CERT_FILE}: not a CA certificate (basicConstraints CA:FALSE)")
    except x509.ExtensionNotFound:
        pass  # a v1 root, like FANNG's own
    for player in range(PARTIES):
        cert_name, key_name = player_cert_file(player), player_key_file(player)
        cert = parsed[cert_name]
        try:
            cert.verify_directly_issued_by(root)
        except Exception:  # ValueError (issuer), InvalidSignature, TypeError (key type)
            raise UserError(f"{certs_dir / cert_name}: not issued and signed by {ROOT_CERT_FILE}: every player would "
                            f"refuse it") from None
        common_names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if not common_names or common_names[0] != player_common_name(player):
            raise UserError(f"{certs_dir / cert_name}: subject common name {common_names[0] if common_names else None!r}, "
                            f"FANNG expects {player_common_name(player)!r} (the name NetworkData.txt gives player {player})")
        try:
            key = serialization.load_pem_private_key(contents[key_name], password=None)
        except TypeError:
            raise UserError(f"{certs_dir / key_name}: an encrypted key; the runtime reads keys without a passphrase") from None
        except ValueError:
            raise UserError(f"{certs_dir / key_name}: not a PEM private key") from None
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise UserError(f"{certs_dir / key_name}: does not match {cert_name}'s public key")
    return contents


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new(path, data, mode)


def _bundle_files(directory: Path) -> list[str]:
    """Relative paths of the regular files under ``directory`` (no symlink followed), sorted."""
    found = []
    for base, _, files in os.walk(directory):
        for name in files:
            found.append(Path(base, name).relative_to(directory).as_posix())
    return sorted(found)


def write_file_list(directory: Path) -> None:
    """FILES.sha256: '<sha256>  <path>' for every other file of the bundle, sorted by path."""
    lines = []
    for rel in _bundle_files(directory):
        if rel == FILE_LIST:
            continue
        if not SAFE_PATH.fullmatch(rel):
            raise UserError(f"{rel!r}: a bundle path with characters FILES.sha256 cannot hold")
        lines.append(f"{sha256_file(directory / rel)}  {rel}\n")
    _write(directory / FILE_LIST, "".join(lines).encode())


def _selection(manifest: Manifest):
    """The hand-off of a checked build (run/hand_off.py: the rule `mpc-export run` uses; players 1 and 2
    get only what run.hand_off.public_roles names, never an input; nobody an expected output), with the
    stricter names a bundle needs: the program name for run-player.sh, plain paths for FILES.sha256."""
    from ..run.hand_off import hand_off

    files = hand_off(manifest)
    check_program_name(files.program_name)
    entries = {entry.path: entry for entry in manifest.files}
    per_player = []
    for player, paths in enumerate(files.data_files):
        chosen = []
        for path in paths:
            entry = entries[path]
            if not SAFE_PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
                raise VerificationFailed(f"manifest.json: {path[:80]!r} is not a plain relative path")
            if entry.role == "expected_output" or path.startswith(f"{files.data_folder}/Outputs/"):
                raise VerificationFailed(f"{path}: an expected output handed to player {player}")  # never: hand_off's rule
            if player and entry.role == "input":
                raise VerificationFailed(f"{path}: an input handed to player {player}")  # never: hand_off's rule
            chosen.append(entry)
        per_player.append(chosen)
    return files, per_player


def _copy_checked(build_dir: Path, entry: FileEntry) -> bytes:
    data = (build_dir / entry.path).read_bytes()
    if entry.sha256 is not None and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise VerificationFailed(f"{entry.path}: changed while the bundles were written")
    return data


def write_bundles(build_dir: Path, out: Path, hosts: list[str], certs_dir: Path | None, port_base: int = 14000, *,
                  trust_pickle: bool = False, trust_torchscript: bool = False) -> list[Path]:
    """Check the build as `mpc-export run` does (re-derived from the model, byte for byte), then write
    out/player-0, out/player-1, out/player-2 (see the module's table); ``out`` must be absent or empty.
    Written in a temporary sibling renamed at the end: on any failure nothing is left. Returns the three
    bundle directories. An MP-SPDZ build gets its own bundles (``deploy/mpspdz.py``, fresh certificates:
    ``certs_dir`` must be None); a FANNG build needs the directory ``mpc-export certs`` wrote."""
    from ..backends import checked_build

    build_dir, out = Path(build_dir), Path(out)
    hosts = validate_hosts(hosts)
    port_base = check_port_base(port_base)
    if out.is_symlink():
        raise UserError(f"{out}: a symbolic link; give a new directory for the bundles")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty directory: give a new one (nothing is overwritten)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{parent}: no such directory")
    if not build_dir.is_dir():
        raise UserError(f"{build_dir}: no such build directory")
    target = parent.resolve() / out.name
    for inside, what in ((build_dir, "the build directory"), (Path(certs_dir or build_dir), "the certificate directory")):
        if inside.is_dir() and target.is_relative_to(inside.resolve()):
            raise UserError(f"{out} is inside {what}: write the bundles elsewhere")
    from ..verify.integrity import read_manifest

    mp_spdz = read_manifest(build_dir).backend == "mp-spdz"
    if mp_spdz and certs_dir is not None:
        raise UserError("--certs is for FANNG builds: an MP-SPDZ build's bundles get fresh certificates of MP-SPDZ's kind")
    if not mp_spdz and certs_dir is None:
        raise UserError("--certs CERTS is needed (the directory mpc-export certs wrote)")
    # FANNG's published test certificates authenticate nobody: acceptable only when every player is this host
    certificates = None if mp_spdz else _check_certificates(Path(certs_dir), all(host == LOOPBACK for host in hosts))

    # the same checks as verify and run: nothing is bundled from a build that is not what the model gives
    manifest, fx, graph, backend = checked_build(build_dir, trust_pickle, trust_torchscript)
    if mp_spdz:
        from .mpspdz import write_mp_spdz_bundles

        return write_mp_spdz_bundles(build_dir, out, hosts, port_base, manifest, graph, fx, backend)
    files, per_player = _selection(manifest)
    name = files.program_name
    program = (build_dir / files.program).read_bytes()
    answers = (build_dir / files.answers).read_bytes()
    network = network_data(hosts).encode()

    with staged_directory(out, parent) as staging:
        players = []
        for player in range(PARTIES):
            root = staging / f"player-{player}"
            root.mkdir()
            _write(root / "Programs" / name / f"{name}.mpc", program)
            _write(root / "io_answers.txt", answers)
            for entry in per_player[player]:
                _write(root / "Data" / entry.path, _copy_checked(build_dir, entry))
            _write(root / NETWORK_DATA, network)
            for cert in [ROOT_CERT_FILE] + [player_cert_file(p) for p in range(PARTIES)]:
                _write(root / "Cert-Store" / cert, certificates[cert])
            _write(root / "Cert-Store" / player_key_file(player), certificates[player_key_file(player)], 0o600)
            _write(root / SCRIPT, run_player_script(player, name, port_base).encode(), 0o755)
            write_file_list(root)
            players.append(out / f"player-{player}")
    return players


@contextmanager
def staged_directory(out: Path, parent: Path):
    """A fresh temporary sibling of ``out`` (in ``parent``) to write into; renamed to ``out`` (absent or an
    empty directory) when the block ends, removed with everything in it on any failure: nothing half-written."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield staging
        try:
            os.rename(staging, out)  # replaces an empty directory; fails on anything else
        except OSError as exc:
            raise UserError(f"{out}: could not put the bundles there ({exc.strerror or exc}); nothing written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_bundle(bundle_dir: Path) -> list[str]:
    """Re-hash a bundle against its FILES.sha256; the problems found, one line each (empty: intact).
    Reported: a missing, malformed or unsorted list; a listed path that is absolute, not plain or outside
    the bundle; a listed file missing, changed or not a regular file; a file the list omits; any symbolic
    link or special file; more than one private key, or a key readable by others."""
    bundle_dir = Path(bundle_dir)
    if bundle_dir.is_symlink():
        return [f"{bundle_dir}: a symbolic link, not a bundle directory"]
    if not bundle_dir.is_dir():
        return [f"{bundle_dir}: not a directory"]
    problems: list[str] = []
    reported: set[str] = set()
    listing = bundle_dir / FILE_LIST
    listed: dict[str, str] = {}
    if listing.is_symlink():
        problems.append(f"{FILE_LIST}: a symbolic link")
        reported.add(FILE_LIST)
    elif not listing.is_file():
        problems.append(f"{FILE_LIST}: missing (no list to check the bundle against)")
    else:
        order = []
        for number, line in enumerate(listing.read_text(errors="replace").splitlines(), start=1):
            match = LIST_LINE.fullmatch(line)
            if not match:
                problems.append(f"{FILE_LIST} line {number}: not '<sha256>  <path>'")
                continue
            digest, rel = match.groups()
            if rel.startswith("/"):
                problems.append(f"{FILE_LIST} line {number}: {rel!r} is an absolute path")
            elif not SAFE_PATH.fullmatch(rel) or any(part in (".", "..") for part in rel.split("/")):
                problems.append(f"{FILE_LIST} line {number}: {rel!r} is not a plain relative path inside the bundle")
            elif rel == FILE_LIST:
                problems.append(f"{FILE_LIST} line {number}: lists itself")
            elif rel in listed:
                problems.append(f"{FILE_LIST} line {number}: {rel} listed twice")
            else:
                listed[rel] = digest
                order.append(rel)
        if order != sorted(order):
            problems.append(f"{FILE_LIST}: not sorted by path")
    for rel, digest in listed.items():
        current = bundle_dir
        link = None
        for part in rel.split("/"):
            current = current / part
            if current.is_symlink():
                link = current.relative_to(bundle_dir).as_posix()
                break
        if link is not None:
            problems.append(f"{rel}: {link} is a symbolic link" if link != rel else f"{rel}: a symbolic link")
            reported.add(link)
        elif not (bundle_dir / rel).exists():
            problems.append(f"{rel}: missing (listed in {FILE_LIST})")
        elif not (bundle_dir / rel).is_file():
            problems.append(f"{rel}: not a regular file")
            reported.add(rel)
        elif sha256_file(bundle_dir / rel) != digest:
            problems.append(f"{rel}: changed (its SHA-256 differs from {FILE_LIST})")
    keys = []
    for base, dirs, files in os.walk(bundle_dir):
        for entry in sorted(dirs + files):
            path = Path(base, entry)
            rel = path.relative_to(bundle_dir).as_posix()
            if path.is_symlink():
                if rel not in reported:
                    problems.append(f"{rel}: a symbolic link")
                    reported.add(rel)
                continue
            if entry in dirs:
                if rel == RUN_ROOT:
                    problems.append(f"{RUN_ROOT}/: a run root made by {SCRIPT}, not part of the bundle (check a copy "
                                    f"taken before the run)")
                continue
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                if rel not in reported:
                    problems.append(f"{rel}: not a regular file")
                continue
            if rel != FILE_LIST and rel not in listed:
                problems.append(f"{rel}: not listed in {FILE_LIST} (added after the bundle was written?)")
            if rel.endswith(".key"):
                keys.append(rel)
                if stat.S_IMODE(mode) & 0o077:
                    problems.append(f"{rel}: a private key readable by others (mode {stat.S_IMODE(mode):04o}; chmod 600)")
        # no descent into links (reported) or into the run root (reported once)
        dirs[:] = [d for d in dirs if not Path(base, d).is_symlink() and Path(base, d) != bundle_dir / RUN_ROOT]
    if len(keys) > 1:
        problems.append(f"{len(keys)} private keys ({', '.join(sorted(keys))}): a bundle holds its own player's key only")
    elif not keys:
        problems.append("no private key (Cert-Store/Player<p+1>.key): the player cannot authenticate")
    return problems
