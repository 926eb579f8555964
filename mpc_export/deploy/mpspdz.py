"""Per-party bundles of an MP-SPDZ build (``mpc-export bundle`` on a ``--backend mp-spdz`` build), to be
copied to each party's host and started there with ``./run-party.sh MP_SPDZ_DIR``.

| bundle file                                   | player-0 (model owner, input) | player-1, player-2 |
| --------------------------------------------- | ----------------------------- | ------------------ |
| ``<name>.mpc`` (the program)                  | yes                           | yes                |
| ``HOSTS`` (host:port of each party)           | yes                           | yes                |
| ``Player-Data/P0.pem``, ``P1.pem``, ``P2.pem`` | yes                           | yes                |
| ``Player-Data/P<p>.key`` (mode 0600)          | its own only                  | its own only       |
| ``Player-Data/Input-P0-0`` (private input)    | yes                           | never              |
| ``run-party.sh``, ``FILES.sha256``            | yes                           | yes                |

Nobody receives the manifest, the expected outputs, the data files' records or another party's key. The
certificates are made here, fresh (self-signed, CN P<p>: what MP-SPDZ's ``Scripts/setup-ssl.sh`` makes and
its TLS checks, by name, against the certificates in ``Player-Data``): whoever writes the bundles has held
every party's key, as with ``mpc-export certs``; parties who do not accept that make their own key and
certificate and replace theirs in every bundle (then rewrite FILES.sha256).

``run-party.sh`` is one fixed text in which only the party number, the program name (an identifier), the
VM (from the backend's protocol table) and the compile flags (from the build's domain) vary. It checks
FILES.sha256, makes the run root ``run/`` beside itself (refusing an existing one), copies the program,
HOSTS and Player-Data there, makes the certificates' hash links (``openssl rehash``), compiles the program
with MP-SPDZ's ``compile.py`` and execs the VM with ``-p <p> -ip HOSTS``. Every party compiles the same
program: use the same MP-SPDZ version on the three hosts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import UserError, VerificationFailed
from ..run.hand_off import PARTIES
from .bundle import _copy_checked, _write, check_port_base, check_program_name, staged_directory, write_file_list
from .certs import validate_hosts

SCRIPT = "run-party.sh"
HOSTS = "HOSTS"
FLAG = re.compile(r"-[A-Za-z]|[0-9]{1,4}|[a-z][a-z-]{0,20}")

_SCRIPT_TEMPLATE = r"""#!/usr/bin/env bash
# run-party.sh: start this bundle's party of a 3-party MP-SPDZ run (written by mpc-export).
#
#   ./run-party.sh MP_SPDZ_DIR
#
# MP_SPDZ_DIR: MP-SPDZ's directory (compile.py, Compiler/ and the VM below); PYTHON: the Python running its
# compiler (python3). Checks FILES.sha256, makes the run root run/ beside this script (refuses an existing
# one), compiles the program there and starts the party; the others start the same way on their hosts
# (HOSTS: host:port of each party, party 0 first).
set -euo pipefail

PARTY=@PARTY@
PROGRAM=@PROGRAM@
VM=@VM@
FLAGS=(@FLAGS@)
VM_FLAGS=(@VM_FLAGS@)

die() { echo "run-party.sh: $*" >&2; exit 2; }
[ "$#" -eq 1 ] || die "usage: run-party.sh MP_SPDZ_DIR"
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
[ -d "$1" ] || die "$1: no such directory (MP-SPDZ)"
RUNTIME=$(cd -- "$1" && pwd -P)
PYTHON=${PYTHON:-python3}
[ -f "$RUNTIME/compile.py" ] || die "$RUNTIME: no compile.py"
[ -x "$RUNTIME/$VM" ] || die "$RUNTIME: no executable $VM"
command -v openssl >/dev/null || die "openssl not found (the certificates' hash links need it)"

cd -- "$HERE"
sha256sum --check --strict --quiet FILES.sha256 >&2 || die "the bundle's files differ from FILES.sha256: not starting"
if [ -e run ] || [ -L run ]; then die "$HERE/run exists (an earlier run's root): move it away first"; fi

umask 077
mkdir run
cp -- "$PROGRAM.mpc" HOSTS run/
cp -R -- Player-Data run/Player-Data
cd run
openssl rehash Player-Data >/dev/null 2>&1 || die "openssl rehash failed"
echo "run-party.sh: compiling $PROGRAM (log: $HERE/run/compile.log)" >&2
"$PYTHON" "$RUNTIME/compile.py" "${FLAGS[@]}" "$PROGRAM.mpc" > compile.log 2>&1 || { tail -n 20 compile.log >&2; die "MP-SPDZ's compiler failed"; }
echo "run-party.sh: starting party $PARTY" >&2
exec "$RUNTIME/$VM" -p "$PARTY" -ip HOSTS "${VM_FLAGS[@]}" "$PROGRAM"
"""


def run_party_script(party: int, program: str, vm: str, flags: list[str], shamir: bool) -> str:
    """run-party.sh for ``party``: the fixed template with its numbers, names and flags, each checked."""
    if party not in range(PARTIES):
        raise UserError(f"party {party!r}: 0, 1 or 2")
    for token in [vm, *flags]:
        if not (FLAG.fullmatch(token) or re.fullmatch(r"[a-z-]+-party\.x", token)):
            raise VerificationFailed(f"manifest.json: {token[:40]!r} is not a compile flag or VM this tool writes")
    text = (_SCRIPT_TEMPLATE.replace("@PARTY@", str(party)).replace("@PROGRAM@", check_program_name(program))
            .replace("@VM@", vm).replace("@FLAGS@", " ".join(flags)).replace("@VM_FLAGS@", f"-N {PARTIES}" if shamir else ""))
    assert "@" not in text.replace("${BASH_SOURCE[0]}", "").replace("${FLAGS[@]}", "").replace("${VM_FLAGS[@]}", "")
    return text


def hosts_file(hosts: list[str], port_base: int) -> str:
    return "".join(f"{host}:{check_port_base(port_base) + p}\n" for p, host in enumerate(validate_hosts(hosts)))


def write_mp_spdz_bundles(build_dir: Path, out: Path, hosts: list[str], port_base: int, manifest, graph, fx, backend) -> list[Path]:
    """The three bundles of a checked MP-SPDZ build (the caller has re-derived it: ``graph`` and ``fx`` are
    what ``checked_build`` gave), written in a temporary sibling of ``out`` renamed at the end."""
    from ..backends.mpspdz import PROTOCOLS
    from ..backends.mpspdz.runtime import checked_compile_flags, checked_files, write_certificates

    program, private_input = checked_files(manifest)
    name = manifest.program.name
    info = PROTOCOLS[backend.protocol]
    flags = checked_compile_flags(manifest, graph, fx, backend.protocol)
    scripts = [run_party_script(p, name, info.vm, flags, "shamir" in backend.protocol) for p in range(PARTIES)]
    network = hosts_file(hosts, port_base).encode()
    entries = {entry.path: entry for entry in manifest.files}
    program_bytes, input_bytes = (_copy_checked(build_dir, entries[path]) for path in (program, private_input))
    parent = out.parent if str(out.parent) else Path(".")
    with staged_directory(out, parent) as staging:
        certificates = staging / "certificates"
        certificates.mkdir(mode=0o700)
        write_certificates(certificates)
        players = []
        for party in range(PARTIES):
            root = staging / f"player-{party}"
            root.mkdir()
            _write(root / f"{name}.mpc", program_bytes)
            _write(root / HOSTS, network)
            for p in range(PARTIES):
                _write(root / "Player-Data" / f"P{p}.pem", (certificates / f"P{p}.pem").read_bytes())
            _write(root / "Player-Data" / f"P{party}.key", (certificates / f"P{party}.key").read_bytes(), 0o600)
            if party == 0:
                _write(root / "Player-Data" / "Input-P0-0", input_bytes)
            _write(root / SCRIPT, scripts[party].encode(), 0o755)
            write_file_list(root)
            players.append(out / f"player-{party}")
        shutil.rmtree(certificates)
    return players
