"""Three hosts for real, on one machine: each player runs in its own Linux network namespace (its own
address on a bridge that lives in a fourth namespace: traffic only between them, nothing on the host's
network), with certificates from `mpc-export certs`: player 0 as its operator starts it (`mpc-export run
--hosts ... --party 0`), players 1 and 2 each from its own bundle only (`mpc-export bundle`, run-player.sh);
the logits equal the reference. The namespaces are created here and removed afterwards, also on failure.
Skips with a message where `ip netns` is not permitted (it needs root)."""

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import SHARED, need_shared, run_cli
from small_models import SmallAvg, build_small
from helpers import players_left

pytestmark = pytest.mark.runtime

COMPILER_DIR = SHARED / "tools" / "mamba-compiler"


def test_three_players_in_three_network_namespaces_from_bundles_and_run_hosts(namespaces, runtime, tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    hosts = ",".join(namespaces.addresses)
    code, stdout, err = run_cli(["certs", "--hosts", hosts, "--out", tmp_path / "certs"], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["bundle", out, "--out", tmp_path / "bundles", "--hosts", hosts, "--certs", tmp_path / "certs",
                                 "--port-base", "14100"], capsys)
    assert code == 0, err
    bundles = [tmp_path / "bundles" / f"player-{p}" for p in range(3)]
    compiler = need_shared(COMPILER_DIR)
    # player 0: its operator's `mpc-export run --hosts`; players 1 and 2: their bundles' run-player.sh
    commands = [[sys.executable, "-c", "from mpc_export.cli.main import main; main()", "run", str(out), "--runtime", str(runtime),
                 "--compiler", str(compiler), "--hosts", hosts, "--party", "0", "--certs", str(tmp_path / "certs"),
                 "--port-base", "14100", "--timeout", "300"]]
    commands += [["bash", str(bundle / "run-player.sh"), str(runtime), str(compiler)] for bundle in bundles[1:]]
    codes, texts = namespaces.run(commands, tmp_path, 400)
    assert codes == [0, 0, 0], "\n".join(t[-1500:] for t in texts)
    assert "max |MPC - reference| = 0 ulp" in " ".join(texts[0].split())
    p0_log = (out / "run-logs" / "run-1" / "P0.log").read_text()
    assert "RUNTIME CHECK passed" in p0_log
    logged = {(int(e), int(j)): int(v) for e, j, v in re.findall(r"LOGIT (\d+) (\d+) (-?\d+)", p0_log)}
    for execution in manifest["executions"]:
        assert [logged[(execution["index"], j)] for j in range(len(execution["logits"]))] == execution["logits"]
    # players 1 and 2 ran from their own bundles only: their own key, no input, no expected output
    inputs = {Path(f["path"]).name for f in manifest["files"] if f["role"] == "input"}
    for p, bundle in enumerate(bundles[1:], start=1):
        names = {q.name for q in (bundle / "run").rglob("*")}
        assert {f"Player{q + 1}.key" for q in range(3)} & names == {f"Player{p + 1}.key"}
        assert not names & {f"MKey-{q}.key" for q in range(3) if q != p}
        assert not names & inputs and not any(n.endswith(".output.txt") for n in names)
    assert not players_left("PlayerBinary.x -pnb 14100")
