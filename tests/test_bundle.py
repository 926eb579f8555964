"""mpc_export.deploy.bundle: one directory per player holding exactly what that party receives (docs/operator.md,
"Deployment: what each party receives"), with NetworkData.txt, its Cert-Store (its own key only), a
run-player.sh and FILES.sha256. The expected file sets are computed here from the manifest's "files"
list and roles, independently of the module's own selection; NetworkData.txt is re-parsed by FANNG's
rules (SystemData::init_from_stream: whitespace-separated tokens read with `>>`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SHARED
from mpc_export.deploy import bundle as bundle_module
from mpc_export.deploy.bundle import check_bundle, write_bundles
from mpc_export.deploy.certs import make_certificates
from mpc_export.errors import UserError, VerificationFailed
from small_models import SmallAvg, build_small

HOSTS = ["alice-host.example", "10.1.2.3", "carol-host.example"]
OPENSSL = shutil.which("openssl")


class _NoCapture:
    """build_small reads the CLI's output through capsys; module-scoped builds have none to give."""

    def readouterr(self):
        return "", ""


# variant -> (build options, prune fraction, the roles players 1 and 2 receive: docs/operator.md's table)
VARIANTS = {
    "private": ([], 0.0, set()),
    "public-weights": (["--weights", "public"], 0.0, {"parameter"}),
    "public-sparsity": (["--sparsity", "public"], 0.5, {"sparsity_pattern"}),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs") / "store"
    make_certificates(HOSTS, out)
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    result = {}
    for name, (extra, prune, _) in VARIANTS.items():
        result[name] = build_small(SmallAvg, tmp_path_factory.mktemp(name), _NoCapture(), extra=extra, prune=prune)
    return result


@pytest.fixture(scope="module")
def bundles(builds, certs, tmp_path_factory):
    result = {}
    for name, build in builds.items():
        out = tmp_path_factory.mktemp(f"bundle-{name}") / "bundles"
        result[name] = (out, write_bundles(build, out, HOSTS, certs, port_base=15000))
    return result


def manifest_of(build: Path) -> dict:
    return json.loads((build / "manifest.json").read_text())


def files_in(directory: Path) -> set[str]:
    found = set()
    for base, dirs, files in os.walk(directory):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            found.add(Path(base, name).relative_to(directory).as_posix())
    return found


def expected_files(manifest: dict, player: int, public_roles: set[str]) -> set[str]:
    name = manifest["program"]["name"]
    folder = manifest["data_folder"]
    expected = {"run-player.sh", "NetworkData.txt", "io_answers.txt", "FILES.sha256", "Cert-Store/RootCA.crt",
                "Cert-Store/Player1.crt", "Cert-Store/Player2.crt", "Cert-Store/Player3.crt",
                f"Cert-Store/Player{player + 1}.key", f"Programs/{name}/{name}.mpc"}
    for entry in manifest["files"]:
        path = entry["path"]
        if not path.startswith(folder + "/"):
            continue
        if player == 0:
            if not path.startswith(f"{folder}/Outputs/"):
                expected.add("Data/" + path)
        elif entry["role"] in public_roles:
            expected.add("Data/" + path)
    return expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_player_gets_exactly_its_files(variant, builds, bundles):
    build = builds[variant]
    manifest = manifest_of(build)
    out, players = bundles[variant]
    assert players == [out / "player-0", out / "player-1", out / "player-2"]
    assert sorted(p.name for p in out.iterdir()) == ["player-0", "player-1", "player-2"]
    public = VARIANTS[variant][2]
    for player, directory in enumerate(players):
        assert files_in(directory) == expected_files(manifest, player, public), (variant, player)
        # the same bytes as the build's
        for rel in files_in(directory):
            if rel.startswith("Data/"):
                assert (directory / rel).read_bytes() == (build / rel[len("Data/"):]).read_bytes()
        name = manifest["program"]["name"]
        assert (directory / "Programs" / name / f"{name}.mpc").read_bytes() == (build / manifest["program"]["path"]).read_bytes()
        assert (directory / "io_answers.txt").read_bytes() == (build / "io_answers.txt").read_bytes()
    if variant == "public-weights":
        assert any(e["role"] == "parameter" and "Data/" + e["path"] in files_in(players[1]) for e in manifest["files"])
    if variant == "public-sparsity":
        assert any(e["role"] == "sparsity_pattern" for e in manifest["files"])
        assert any(e["role"] == "sparsity_pattern" and "Data/" + e["path"] in files_in(players[2]) for e in manifest["files"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_what_nobody_or_only_player_0_gets(variant, builds, bundles):
    manifest = manifest_of(builds[variant])
    inputs = {"Data/" + e["path"] for e in manifest["files"] if e["role"] == "input"}
    assert inputs
    input_bytes = {(builds[variant] / e["path"]).read_bytes() for e in manifest["files"] if e["role"] == "input"}
    out, players = bundles[variant]
    for player, directory in enumerate(players):
        held = files_in(directory)
        assert not any("/Outputs/" in f or f.startswith("Outputs/") for f in held)
        assert not any(Path(f).name == "manifest.json" for f in held)
        assert not any(Path(f).name == "RootCA.key" for f in held)
        assert {f for f in held if f.endswith(".key")} == {f"Cert-Store/Player{player + 1}.key"}
        if player == 0:
            assert inputs <= held
        else:
            assert not inputs & held
            assert not any("Inputs" in Path(f).parts for f in held)
            assert not any((directory / f).read_bytes() in input_bytes for f in held)
        key = directory / "Cert-Store" / f"Player{player + 1}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def parse_network_data(text: str) -> dict:
    """FANNG's SystemData::init_from_stream: tokens separated by whitespace, read in order."""
    tokens = text.split()
    root, count = tokens[0], int(tokens[1])
    players = []
    at = 2
    for _ in range(count):
        players.append({"index": int(tokens[at]), "host": tokens[at + 1], "cert": tokens[at + 2], "name": tokens[at + 3]})
        at += 4
    fake_offline, fake_sacrifice = int(tokens[at]), int(tokens[at + 1])
    assert at + 2 == len(tokens), "tokens after the last field"
    return {"root": root, "players": players, "fake_offline": fake_offline, "fake_sacrifice": fake_sacrifice}


def test_network_data(bundles, certs):
    out, players = bundles["private"]
    texts = {(p / "NetworkData.txt").read_text() for p in players}
    assert len(texts) == 1
    text = texts.pop()
    assert text == ("RootCA.crt\n3\n0 alice-host.example Player1.crt P1\n1 10.1.2.3 Player2.crt P2\n"
                    "2 carol-host.example Player3.crt P3\n0\n0\n")
    parsed = parse_network_data(text)
    assert parsed["root"] == "RootCA.crt" and parsed["fake_offline"] == 0 and parsed["fake_sacrifice"] == 0
    assert [p["index"] for p in parsed["players"]] == [0, 1, 2]
    assert [p["host"] for p in parsed["players"]] == HOSTS
    shipped = SHARED / "tools" / "fanng-runtime" / "Auto-Test-Data" / "1" / "NetworkData.txt"
    if shipped.is_file():  # the same layout as FANNG's own file, hosts aside
        assert parse_network_data(shipped.read_text())["players"] == [dict(p, host="127.0.0.1") for p in parsed["players"]]
        assert shipped.read_text().splitlines()[-2:] == text.splitlines()[-2:]
    for player, directory in enumerate(players):
        store = directory / "Cert-Store"
        assert (store / parsed["root"]).is_file()
        for entry in parsed["players"]:
            assert (store / entry["cert"]).read_bytes() == (certs / entry["cert"]).read_bytes()
            if OPENSSL:  # the CN FANNG compares with the name in NetworkData.txt
                subject = subprocess.run([OPENSSL, "x509", "-in", str(store / entry["cert"]), "-noout", "-subject",
                                          "-nameopt", "RFC2253"], capture_output=True, text=True, check=True).stdout
                assert f"CN={entry['name']}" in subject.split("=", 1)[1].split(",")
        # FANNG's key file: the certificate's name with "crt" replaced by "key" (Init_SSL_CTX)
        own = parsed["players"][player]["cert"]
        assert (store / (own[:-3] + "key")).read_bytes() == (certs / (own[:-3] + "key")).read_bytes()


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
def test_bundle_certificates_verify(bundles):
    _, players = bundles["private"]
    for player, directory in enumerate(players):
        store = directory / "Cert-Store"
        for n in (1, 2, 3):
            result = subprocess.run([OPENSSL, "verify", "-CAfile", "RootCA.crt", f"Player{n}.crt"], cwd=store,
                                    capture_output=True, text=True)
            assert result.returncode == 0 and result.stdout.strip() == f"Player{n}.crt: OK"
        own = f"Player{player + 1}"
        cert_key = subprocess.run([OPENSSL, "x509", "-in", f"{own}.crt", "-noout", "-pubkey"], cwd=store, capture_output=True, text=True)
        key_key = subprocess.run([OPENSSL, "pkey", "-in", f"{own}.key", "-pubout"], cwd=store, capture_output=True, text=True)
        assert cert_key.returncode == 0 and cert_key.stdout == key_key.stdout


def test_files_sha256(bundles):
    _, players = bundles["public-weights"]
    for directory in players:
        lines = (directory / "FILES.sha256").read_text().splitlines()
        paths = [line.split("  ", 1)[1] for line in lines]
        assert paths == sorted(paths)
        assert set(paths) == files_in(directory) - {"FILES.sha256"}
        for line in lines:
            digest, rel = line.split("  ", 1)
            assert digest == hashlib.sha256((directory / rel).read_bytes()).hexdigest()
        if shutil.which("sha256sum"):
            result = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "FILES.sha256"], cwd=directory,
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr


def test_run_player_script_text(bundles, builds):
    _, players = bundles["private"]
    name = manifest_of(builds["private"])["program"]["name"]
    for player, directory in enumerate(players):
        script = directory / "run-player.sh"
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
        assert os.access(script, os.X_OK)
        assert f"PLAYER={player}\n" in text and "PORT_BASE=15000\n" in text and f"PROGRAM={name}\n" in text
        for host in HOSTS:  # no user-controlled string but the validated program name
            assert host not in text
        assert manifest_of(builds["private"])["data_folder"] not in text
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # the three scripts differ only in the player number
    texts = [(p / "run-player.sh").read_text().replace(f"PLAYER={i}\n", "PLAYER=?\n") for i, p in enumerate(players)]
    assert texts[0] == texts[1] == texts[2]


FAKE_PLAYER = """#!/usr/bin/env bash
# a stand-in for PlayerBinary.x: records how it was started
{
  echo "cwd=$(pwd -P)"
  echo "args=$*"
  echo "data=$(cd Data && find . -type f | LC_ALL=C sort | tr '\\n' ' ')"
  echo "certs=$(cd Cert-Store && ls | tr '\\n' ' ')"
  echo "bytecode=$(ls Programs/*/ | tr '\\n' ' ')"
} > "$RECORD"
cat > "$RECORD.stdin"
"""

FAKE_COMPILER = """
import os, sys, threading
# a stand-in for compile-mamba.py: checks how it is run, writes the schedule the real one writes
assert sys.getrecursionlimit() >= 20000, sys.getrecursionlimit()
assert threading.current_thread() is not threading.main_thread()
assert sys.argv[1:4] == ["-n", "-r", "-s"], sys.argv
program = sys.argv[4]
name = os.path.basename(program)
assert os.path.isfile(os.path.join(program, name + ".mpc"))
assert os.path.isfile("Data/SharingData.txt")
with open(os.path.join(program, name + ".sch"), "w") as f:
    f.write("compiled by the fake\\n")
with open(os.environ["RECORD"] + ".compile", "w") as f:
    f.write(os.environ.get("PYTHONPATH", "") + "\\n" + os.getcwd() + "\\n")
"""


def _fake_runtime(root: Path) -> Path:
    runtime = root / "runtime"
    (runtime / "Circuits").mkdir(parents=True)
    (runtime / "Circuits" / "ANDN.txt").write_text("circuit\n")
    (runtime / "Data-template").mkdir()
    for name in ["SharingData.txt", "SharingData2.txt", "ConversionCircuit-LSSS_to_GC.txt", "NetworkData.txt"] + \
            [f"MKey-{p}.key" for p in range(3)] + [f"StorageConfig-P{p}.txt" for p in range(3)]:
        (runtime / "Data-template" / name).write_text(f"{name}\n")
        (runtime / "Data-template" / name).chmod(0o444)
    (runtime / "Cert-Store").mkdir()
    (runtime / "Cert-Store" / "Player1.key").write_text("the operator's test key: must not be used\n")
    (runtime / "PlayerBinary.x").write_text(FAKE_PLAYER)
    (runtime / "PlayerBinary.x").chmod(0o755)
    (runtime / "compile-mamba.py").write_text(textwrap.dedent(FAKE_COMPILER))
    return runtime


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash and sha256sum")
def test_run_player_script_stages_a_run_root(tmp_path, bundles, builds):
    """run-player.sh against a stand-in runtime (no real player starts): the run root holds the runtime's
    common set-up, only this player's MAC key and storage config, the bundle's NetworkData.txt, Cert-Store
    and data; the program is compiled through the boot; the player gets -pnb PORT_BASE P and the answers."""
    _, players = bundles["public-weights"]
    manifest = manifest_of(builds["public-weights"])
    name = manifest["program"]["name"]
    runtime = _fake_runtime(tmp_path)
    player = 1
    mine = tmp_path / "player-1"
    shutil.copytree(players[player], mine, symlinks=True)
    record = tmp_path / "record"
    env = dict(os.environ, RECORD=str(record), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(mine / "run-player.sh"), str(runtime)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split("=", 1) for line in record.read_text().splitlines())
    run_root = mine / "run"
    assert lines["cwd"] == str(run_root.resolve())
    assert lines["args"] == f"-pnb 15000 {player} Programs/{name}"
    data = set(lines["data"].split())
    expected = {"./SharingData.txt", "./SharingData2.txt", "./ConversionCircuit-LSSS_to_GC.txt", "./MKey-1.key",
                "./StorageConfig-P1.txt", "./NetworkData.txt"}
    expected |= {"./" + e["path"] for e in manifest["files"] if e["role"] == "parameter"}
    assert data == expected
    assert (run_root / "Data" / "NetworkData.txt").read_bytes() == (mine / "NetworkData.txt").read_bytes()
    assert lines["certs"].split() == ["Player1.crt", "Player2.crt", "Player2.key", "Player3.crt", "RootCA.crt"]
    assert (run_root / "Cert-Store" / "Player2.key").read_bytes() == (mine / "Cert-Store" / "Player2.key").read_bytes()
    assert stat.S_IMODE((run_root / "Cert-Store" / "Player2.key").stat().st_mode) & 0o077 == 0
    assert f"{name}.sch" in lines["bytecode"]
    assert Path(str(record) + ".stdin").read_bytes() == (mine / "io_answers.txt").read_bytes()
    pythonpath, cwd = Path(str(record) + ".compile").read_text().splitlines()
    assert pythonpath == str(runtime.resolve()) and cwd == str(run_root.resolve())
    assert (run_root / "PlayerBinary.x").resolve() == (runtime / "PlayerBinary.x").resolve()
    assert (run_root / "Circuits").resolve() == (runtime / "Circuits").resolve()

    # a second start refuses the existing run root
    again = subprocess.run(["bash", str(mine / "run-player.sh"), str(runtime)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "run" in again.stderr
    # a tampered bundle does not start
    shutil.rmtree(run_root)
    record.unlink()
    (mine / "io_answers.txt").write_text("i something/else.txt\n")
    tampered = subprocess.run(["bash", str(mine / "run-player.sh"), str(runtime)], env=env, capture_output=True, text=True, timeout=60)
    assert tampered.returncode != 0 and not record.exists() and not run_root.exists()
    # usage errors
    assert subprocess.run(["bash", str(mine / "run-player.sh")], env=env, capture_output=True).returncode != 0
    assert subprocess.run(["bash", str(mine / "run-player.sh"), str(tmp_path / "absent")], env=env, capture_output=True).returncode != 0


def test_run_player_script_compiler_dir(tmp_path, bundles):
    _, players = bundles["private"]
    runtime = _fake_runtime(tmp_path)
    compiler = tmp_path / "compiler"
    compiler.mkdir()
    (runtime / "compile-mamba.py").rename(compiler / "compile-mamba.py")
    mine = tmp_path / "player-2"
    shutil.copytree(players[2], mine, symlinks=True)
    record = tmp_path / "record"
    env = dict(os.environ, RECORD=str(record), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(mine / "run-player.sh"), str(runtime), str(compiler)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(str(record) + ".compile").read_text().splitlines()[0] == str(compiler.resolve())
    lines = dict(line.split("=", 1) for line in record.read_text().splitlines())
    assert lines["args"].split()[:3] == ["-pnb", "15000", "2"]
    assert set(lines["data"].split()) == {"./SharingData.txt", "./SharingData2.txt", "./ConversionCircuit-LSSS_to_GC.txt",
                                           "./MKey-2.key", "./StorageConfig-P2.txt", "./NetworkData.txt"}


MAMBA_COMPILER = SHARED / "tools" / "mamba-compiler"
FANNG_SETUP = SHARED / "tools" / "fanng-runtime" / "Auto-Test-Data" / "1"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash and sha256sum")
def test_run_player_script_with_the_real_compiler(tmp_path, bundles, builds):
    """Each player's run-player.sh compiles the program with the real MAMBA compiler (../shared) in its own
    run root, against FANNG's shipped set-up. The schedules are equal and the bytecodes the same size; the
    bytecodes' bytes are not compared: this compiler allocates registers differently from one run to the
    next (measured: same opcode sequence, other register numbers). The player binary is a stand-in: no
    3-party run starts."""
    for needed in (MAMBA_COMPILER / "compile-mamba.py", FANNG_SETUP / "SharingData.txt"):
        if not needed.exists():
            pytest.skip(f"{needed} is absent (tests that need ../shared skip without it)")
    _, players = bundles["public-sparsity"]
    name = manifest_of(builds["public-sparsity"])["program"]["name"]
    runtime = tmp_path / "runtime"
    (runtime / "Circuits").mkdir(parents=True)
    shutil.copytree(FANNG_SETUP, runtime / "Data")
    (runtime / "PlayerBinary.x").write_text('#!/usr/bin/env bash\necho "started $*"\ncat > /dev/null\n')
    (runtime / "PlayerBinary.x").chmod(0o755)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    bytecode = []
    for player, bundle in enumerate(players):
        mine = tmp_path / f"player-{player}"
        shutil.copytree(bundle, mine, symlinks=True)
        result = subprocess.run(["bash", str(mine / "run-player.sh"), str(runtime), str(MAMBA_COMPILER)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr + (mine / "run" / "compile.log").read_text()
        assert result.stdout.strip() == f"started -pnb 15000 {player} Programs/{name}"
        compiled = mine / "run" / "Programs" / name
        assert (compiled / f"{name}.sch").is_file()
        bytecode.append(((compiled / f"{name}.sch").read_bytes(), sorted((p.name, p.stat().st_size) for p in compiled.glob("*.bc"))))
        assert bytecode[-1][1]
    assert bytecode[0] == bytecode[1] == bytecode[2]


# --- check_bundle --------------------------------------------------------------------------------------

@pytest.fixture
def fresh(bundles, tmp_path):
    _, players = bundles["public-sparsity"]
    copy = tmp_path / "player-0"
    shutil.copytree(players[0], copy, symlinks=True)
    return copy


def test_check_bundle_passes_on_fresh_bundles(bundles):
    for _, players in bundles.values():
        for directory in players:
            assert check_bundle(directory) == []


def test_check_bundle_reports_a_modified_file(fresh):
    target = next(p for p in fresh.rglob("*.txt") if "all_parameters" in p.parts)
    target.write_text(target.read_text() + "1\n")
    problems = check_bundle(fresh)
    assert len(problems) == 1 and target.relative_to(fresh).as_posix() in problems[0]


def test_check_bundle_reports_an_added_file(fresh):
    (fresh / "Data" / "extra.txt").write_text("x\n")
    problems = check_bundle(fresh)
    assert len(problems) == 1 and "Data/extra.txt" in problems[0]


def test_check_bundle_reports_a_deleted_file(fresh):
    (fresh / "io_answers.txt").unlink()
    problems = check_bundle(fresh)
    assert len(problems) == 1 and "io_answers.txt" in problems[0]


@pytest.mark.parametrize("kind", ["file", "directory", "replacing"])
def test_check_bundle_reports_a_symlink(fresh, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("x\n")
    if kind == "file":
        (fresh / "Data" / "link.txt").symlink_to(outside / "f.txt")
        name = "Data/link.txt"
    elif kind == "directory":
        (fresh / "Programs" / "linked").symlink_to(outside)
        name = "Programs/linked"
    else:  # a listed file replaced by a link to a copy with the same bytes
        (outside / "answers.txt").write_bytes((fresh / "io_answers.txt").read_bytes())
        (fresh / "io_answers.txt").unlink()
        (fresh / "io_answers.txt").symlink_to(outside / "answers.txt")
        name = "io_answers.txt"
    problems = check_bundle(fresh)
    assert problems and any(name in p and "link" in p for p in problems)


@pytest.mark.parametrize("bad_path", ["/etc/passwd", "../player-1/io_answers.txt", "Data/../../x", "./io_answers.txt"])
def test_check_bundle_reports_paths_outside(fresh, bad_path):
    listing = fresh / "FILES.sha256"
    listing.write_text(listing.read_text() + f"{'0' * 64}  {bad_path}\n")
    problems = check_bundle(fresh)
    assert any(bad_path in p for p in problems)


def test_check_bundle_reports_another_players_key(fresh, certs):
    shutil.copy(certs / "Player2.key", fresh / "Cert-Store" / "Player2.key")
    # even when listed: a bundle holds one key
    listing = fresh / "FILES.sha256"
    lines = listing.read_text().splitlines()
    lines.append(f"{hashlib.sha256((certs / 'Player2.key').read_bytes()).hexdigest()}  Cert-Store/Player2.key")
    listing.write_text("\n".join(sorted(lines, key=lambda l: l.split('  ', 1)[1])) + "\n")
    problems = check_bundle(fresh)
    assert any("Player2.key" in p for p in problems)


def test_check_bundle_reports_a_missing_or_malformed_list(fresh):
    (fresh / "FILES.sha256").write_text("not a line\n")
    assert check_bundle(fresh)
    (fresh / "FILES.sha256").unlink()
    assert check_bundle(fresh)
    assert check_bundle(fresh / "absent")


def test_check_bundle_reports_a_readable_key(fresh):
    (fresh / "Cert-Store" / "Player1.key").chmod(0o644)
    problems = check_bundle(fresh)
    assert len(problems) == 1 and "Player1.key" in problems[0]


# --- refusals ------------------------------------------------------------------------------------------

def test_refuses_a_non_empty_output(builds, certs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    with pytest.raises(UserError) as info:
        write_bundles(builds["private"], out, HOSTS, certs)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_accepts_an_empty_output_directory(builds, certs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    players = write_bundles(builds["private"], out, HOSTS, certs)
    assert [p.name for p in players] == ["player-0", "player-1", "player-2"]
    assert all(check_bundle(p) == [] for p in players)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _no_leftovers(parent: Path, allowed: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == allowed


def test_refuses_a_tampered_build(builds, certs, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(builds["private"], build)
    target = next(p for p in (build).rglob("*.txt") if "weights" in p.parts)
    values = target.read_text().split()
    values[0] = str(int(float(values[0])) + 1) if "." not in values[0] else values[0] + "1"
    target.write_text(" ".join(values) + "\n")
    with pytest.raises((UserError, VerificationFailed)):
        write_bundles(build, tmp_path / "out", HOSTS, certs)
    _no_leftovers(tmp_path, {"build"})


def test_refuses_an_unlisted_file_in_the_build(builds, certs, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(builds["private"], build)
    manifest = manifest_of(build)
    (build / manifest["data_folder"] / "Inputs" / "secret.txt").write_text("1\n")
    with pytest.raises(VerificationFailed):
        write_bundles(build, tmp_path / "out", HOSTS, certs)
    _no_leftovers(tmp_path, {"build"})


def test_refuses_bad_hosts_and_ports(builds, certs, tmp_path):
    for hosts in (["a b", "x", "y"], ["x", "y"], ["x", "y/z", "w"], ["x", "y", "z\n"]):
        with pytest.raises(UserError):
            write_bundles(builds["private"], tmp_path / "out", hosts, certs)
    for port in (0, 80, 65534, -1, "14000", True):
        with pytest.raises(UserError):
            write_bundles(builds["private"], tmp_path / "out", HOSTS, certs, port_base=port)
    _no_leftovers(tmp_path, set())


def test_refuses_the_published_test_certificates(builds, tmp_path):
    store = SHARED / "tools" / "fanng-runtime" / "Auto-Test-Data" / "Cert-Store"
    if not store.is_dir():
        pytest.skip(f"{store} is absent (tests that need ../shared skip without it)")
    with pytest.raises(UserError) as info:
        write_bundles(builds["private"], tmp_path / "out", HOSTS, store)
    assert "test" in str(info.value) and "other than 127.0.0.1" in str(info.value)
    _no_leftovers(tmp_path, set())
    # on one machine (every player at 127.0.0.1) they authenticate as much as anything else there would
    written = write_bundles(builds["private"], tmp_path / "loopback", ["127.0.0.1"] * 3, store)
    assert [p.name for p in written] == ["player-0", "player-1", "player-2"]


def test_refuses_a_certificate_from_another_ca(builds, certs, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(certs, mixed)
    other = tmp_path / "other"
    make_certificates(HOSTS, other)
    for suffix in (".crt", ".key"):
        shutil.copy(other / f"Player2{suffix}", mixed / f"Player2{suffix}")
    with pytest.raises(UserError) as info:
        write_bundles(builds["private"], tmp_path / "out", HOSTS, mixed)
    assert "Player2.crt" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_refuses_a_key_that_does_not_match(builds, certs, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(certs, mixed)
    shutil.copy(certs / "Player1.key", mixed / "Player3.key")
    with pytest.raises(UserError) as info:
        write_bundles(builds["private"], tmp_path / "out", HOSTS, mixed)
    assert "Player3" in str(info.value)


def test_refuses_a_missing_certificate_file(builds, certs, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(certs, mixed)
    (mixed / "Player2.key").unlink()
    with pytest.raises(UserError) as info:
        write_bundles(builds["private"], tmp_path / "out", HOSTS, mixed)
    assert "Player2.key" in str(info.value)


def test_refuses_an_output_inside_the_build(builds, certs):
    with pytest.raises(UserError):
        write_bundles(builds["private"], builds["private"] / "bundles", HOSTS, certs)
    assert not (builds["private"] / "bundles").exists()


@pytest.mark.parametrize("name", ["1abc", "a-b", "a b", "a\nb", "", "a/b", "ä", "a;rm -rf ~"])
def test_refuses_an_unsafe_program_name(name):
    with pytest.raises(UserError):
        bundle_module.check_program_name(name)


def test_accepts_safe_program_names():
    for name in ("mpc_export_small", "_x", "A9"):
        assert bundle_module.check_program_name(name) == name


def test_nothing_half_written_on_failure(builds, certs, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "write_file_list", boom)
    with pytest.raises(OSError):
        write_bundles(builds["private"], tmp_path / "out", HOSTS, certs)
    _no_leftovers(tmp_path, set())


def test_check_bundle_reports_a_run_root_once(fresh):
    (fresh / "run" / "Data").mkdir(parents=True)
    (fresh / "run" / "Data" / "Memory-P0").write_text("x\n")
    (fresh / "run" / "compile.log").write_text("x\n")
    problems = check_bundle(fresh)
    assert len(problems) == 1 and problems[0].startswith("run/")


def test_refuses_an_output_that_is_a_file_or_a_link(builds, certs, tmp_path):
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    for out in (tmp_path / "file", tmp_path / "link"):
        with pytest.raises(UserError):
            write_bundles(builds["private"], out, HOSTS, certs)
    _no_leftovers(tmp_path, {"file", "empty", "link"})
    assert list((tmp_path / "empty").iterdir()) == []
