"""Real 3-party runs in the FANNG-MPC runtime (../shared/tools/fanng-runtime, built once and cached).

Each run takes ~11.5 GB (3 players x ~3.8 GB): these tests run one at a time (no parallel pytest), and
skip with a message when ../shared or a runtime is absent."""

import hashlib
import json
import os
import re
import subprocess
import warnings

import numpy as np
import pytest
import torch

from conftest import SHARED, need_shared, run_cli

COMPILER_DIR = SHARED / "tools" / "mamba-compiler"


@pytest.fixture(scope="module")
def runtime():
    if os.environ.get("FANNG_RUNTIME"):
        return os.environ["FANNG_RUNTIME"]
    build = need_shared(SHARED / "tools" / "fanng-runtime" / "build")
    proc = subprocess.run([str(build)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"the FANNG-MPC runtime could not be built here: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


class SmallAvg(torch.nn.Module):
    """conv + BN + ReLU + 2x2 average pool + linear on 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool, self.flat, self.fc = torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.bn(self.conv(x))))))


class SmallResidual(torch.nn.Module):
    """conv + 2x2 max pool + BN + ReLU, a residual conv + BN + ReLU added back, global max pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool1, self.bn1, self.relu1 = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.MaxPool2d(2), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.conv2, self.bn2, self.relu2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool2, self.flat, self.fc = torch.nn.MaxPool2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu1(self.bn1(self.pool1(self.conv1(x))))
        x = x + self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.flat(self.pool2(x)))


def build_small(module_cls, tmp_path, capsys, seed=1, debug=False):
    torch.manual_seed(seed)
    model = module_cls()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    path = tmp_path / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    images = []
    for i in range(2):
        images.append(tmp_path / f"img{i}.npy")
        np.save(images[-1], np.random.default_rng(i).random((3, 8, 8)))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--input", images[0], "--input", images[1], "--json"]
                           + (["--debug"] if debug else []), capsys)
    assert code == 0, err
    return out


def players_left(root_hint="mpc-export-run-"):
    proc = subprocess.run(["pgrep", "-f", root_hint], capture_output=True, text=True)
    return [p for p in proc.stdout.split() if p]


@pytest.mark.parametrize("module_cls", [SmallAvg, SmallResidual], ids=["conv_avgpool_linear", "residual_maxpool"])
def test_real_run_within_bound_of_reference(module_cls, runtime, tmp_path, capsys):
    debug = module_cls is SmallResidual  # its program also prints every layer, checked layer by layer
    out = build_small(module_cls, tmp_path, capsys, debug=debug)
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300"], capsys)
    assert code == 0, stdout + err
    if debug:
        layers = re.findall(r"layer (\S+): (\d+) values, max \|MPC - reference\| = (\d+) ulp, bound (\d+) ulp", stdout)
        assert len(layers) >= 4  # conv_layer_1, conv_layer_2, the add, the global max pool, the linear layer
        assert all(int(err_) <= int(bound) for _, _, err_, bound in layers)
    manifest = json.loads((out / "manifest.json").read_text())
    log = (out / "run-logs" / "P0.log").read_text()
    logged = {(int(e), int(j)): int(v) for e, j, v in re.findall(r"LOGIT (\d+) (\d+) (-?\d+)", log)}
    assert len(logged) == 2 * 3
    bound = int(re.search(r"bound (\d+) ulp; predicted", stdout).group(1))
    for execution in manifest["executions"]:
        e = execution["index"]
        mpc = [logged[(e, j)] for j in range(3)]
        ref = execution["logits"]
        assert max(abs(a - b) for a, b in zip(mpc, ref)) <= bound
        assert int(np.argmax(mpc)) == execution["predicted_class"]
    assert not players_left()


def test_tampered_file_is_refused_before_any_player_starts(runtime, tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    rel = next(f["path"] for f in manifest["files"] if f["role"] == "parameter" and "conv_layer_1_weight" in f["path"])
    text = (out / rel).read_text()
    (out / rel).write_text(text.replace("0.", "1.", 1))
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR)], capsys)
    assert code == 1 and rel in err
    assert not (out / "run-logs").exists()  # no player was started


def test_runtime_failure_reports_the_player_and_leaves_nothing_running(runtime, tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["role"] == "input" and f["execution"] == 1)
    path = out / entry["path"]
    tokens = path.read_text().split()[:-5]  # the program reads 5 values more than the file now holds
    path.write_text(" ".join(tokens) + "\n")
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()  # a consistent manifest: only the runtime can tell
    entry["count"] = len(tokens)
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300"], capsys)
    assert code == 1
    assert re.search(r"player \d failed", err)
    assert len(err.strip().splitlines()) >= 3  # the failing player's last log lines
    assert not players_left()
