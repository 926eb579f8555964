"""A user's own architecture: every dead end names the way out. An unknown state_dict gives the one ONNX
export line; a whole pickled module says what --trust-pickle needs (its defining module importable) and
the ONNX alternative; with --trust-pickle, a module whose class cannot be imported says to make it
importable. Then the export line itself, run as the message says, builds and verifies."""

import importlib
import sys
import textwrap
import warnings

import torch

from conftest import run_cli

MODULE = textwrap.dedent('''
    import torch

    class MyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
            self.pool, self.fc = torch.nn.MaxPool2d(4), torch.nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))
''')


def _my_net(tmp_path, name):
    """MyNet from a module file of its own (as a user's project has it), imported from tmp_path."""
    (tmp_path / f"{name}.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name).MyNet
    finally:
        sys.path.remove(str(tmp_path))


def _forget(name):
    sys.modules.pop(name, None)


def test_an_unknown_state_dict_gives_the_onnx_export_line(tmp_path, capsys):
    net = _my_net(tmp_path, "usernet_a")
    torch.save(net().state_dict(), tmp_path / "mine.pth")
    code, _, err = run_cli(["build", tmp_path / "mine.pth", "--out", tmp_path / "o"], capsys)
    line = " ".join(err.split())
    assert code == 2 and "match no known model" in line
    assert 'torch.onnx.export(model.eval(), torch.zeros(1, 3, 32, 32), "model.onnx")' in line
    _forget("usernet_a")


def test_a_pickled_module_says_what_trust_pickle_needs(tmp_path, capsys):
    net = _my_net(tmp_path, "usernet_b")
    torch.save(net(), tmp_path / "whole.pth")
    code, _, err = run_cli(["build", tmp_path / "whole.pth", "--out", tmp_path / "o"], capsys)
    line = " ".join(err.split())
    assert code == 2 and "--trust-pickle" in line and "must be importable" in line and "torch.onnx.export(" in line
    # trusted, but its class's module is not importable here: the message says how to fix that
    _forget("usernet_b")
    code, _, err = run_cli(["build", tmp_path / "whole.pth", "--out", tmp_path / "o", "--trust-pickle"], capsys)
    line = " ".join(err.split())
    assert code == 2 and "cannot unpickle" in line and "PYTHONPATH" in line


def test_the_export_line_from_the_message_builds_and_verifies(tmp_path, capsys):
    net = _my_net(tmp_path, "usernet_c")
    torch.manual_seed(0)
    model = net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(1, 3, 32, 32), str(tmp_path / "model.onnx"))
    code, _, err = run_cli(["build", tmp_path / "model.onnx", "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["verify", tmp_path / "o"], capsys)
    assert code == 0, err
    _forget("usernet_c")
