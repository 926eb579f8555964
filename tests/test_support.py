"""docs/support.md's table of what exports is the one the registries generate, and `mpc-export check` lists
every problem of a model at once (exit 2), or says it exports (exit 0)."""

import warnings

import torch

from conftest import ROOT, SEED_MODEL, run_cli


def test_readme_holds_the_generated_support_table():
    from mpc_export.load.support import END, START, support_table

    text = (ROOT / "docs" / "support.md").read_text()
    assert START in text and END in text
    assert text.split(START)[1].split(END)[0].strip() == support_table().strip()


class ThreeProblems(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        x = torch.nn.functional.leaky_relu(torch.sigmoid(self.conv(x)))
        return self.fc(torch.softmax(x.flatten(1), 1))  # a Softmax inside the network: no exact rewrite


def test_check_lists_every_problem_with_its_rewrite_then_exits_2(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ThreeProblems().eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    code, out, err = run_cli(["check", path], capsys)
    assert code == 2 and "3 problem(s)" in err and len(err.strip().splitlines()) == 1, err
    text = " ".join(out.split())
    for op, rewrite in (("Sigmoid", "piecewise-linear"), ("LeakyRelu", "use ReLU"), ("Softmax", "only a trailing Softmax")):
        assert op in text and rewrite in text, text
    assert not (tmp_path / "mpc-export-out").exists()


def test_check_of_an_exportable_model_exits_0(capsys):
    code, out, err = run_cli(["check", SEED_MODEL], capsys)
    assert code == 0, err
    assert "exports: 8 layers" in " ".join(out.split())
