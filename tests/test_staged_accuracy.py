"""verify --dataset reports accuracy at each stage (float; float with the exported weights; fixed-point
reference; secure run), so a loss is attributed to weight quantization or to activation truncation.

Oracle for the quantized-weights stage: PyTorch's own forward of the seed architecture with every
parameter rounded to 2^-F as docs/schedule.md documents the fold (conv weight and bias; BatchNorm as
x * round(gamma / sqrt(var + eps)) + round(beta - mean * gamma / sqrt(var + eps)); linear weight and bias),
built here from the state_dict, not from the tool's IR. Oracle for the fixed-point reference stage: the
same PyTorch model in float64 with the input rounded to 2^-F and every output the schedule truncates
floored to 2^-F (after each BatchNorm, each 2x2 average pool and each linear layer), by forward hooks: a
float emulation of the documented schedule, exact up to a floor landing on a float rounding error."""

import numpy as np
import pytest
import torch

from conftest import ROOT, SEED_MODEL, need_shared

pytestmark = pytest.mark.slow

IMAGES = 300


def quantized_torch_accuracy(frac_bits: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """PyTorch's accuracy on x (NHWC bytes) with labels y: float; with the parameters at 2^-F; and with
    the activations also at 2^-F, floored where the schedule truncates."""
    from mpc_export.load.torch_models import PrunedResNet

    state = torch.load(SEED_MODEL, map_location="cpu", weights_only=True)
    model = PrunedResNet()
    model.load_state_dict(state)
    model.eval()
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        float_acc = float((model(images).argmax(1).numpy() == y).mean())

        def q(t):
            return torch.round(t.double() * 2**frac_bits).float() / 2**frac_bits

        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.copy_(q(module.weight))
                module.bias.copy_(q(module.bias))
            elif isinstance(module, torch.nn.BatchNorm2d):
                gamma = module.weight.double() / torch.sqrt(module.running_var.double() + module.eps)
                beta = module.bias.double() - module.running_mean.double() * gamma
                module.weight.copy_(q(gamma))
                module.bias.copy_(q(beta))
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.eps = 0.0  # x * 1 / sqrt(1 + 0): exactly the affine map
        quant_acc = float((model(images).argmax(1).numpy() == y).mean())

        def floor_output(module, inputs, output):
            return torch.floor(output * 2**frac_bits) / 2**frac_bits

        model.double()
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.AvgPool2d, torch.nn.Linear)):
                module.register_forward_hook(floor_output)
        encoded = images.double() * 2**frac_bits
        encoded = torch.sign(encoded) * torch.floor(torch.abs(encoded) + 0.5) / 2**frac_bits  # round half away from zero
        fixed_acc = float((model(encoded).argmax(1).numpy() == y).mean())
    return float_acc, quant_acc, fixed_acc


@pytest.mark.parametrize("frac_bits", [12, 5])
def test_each_stage_accuracy_matches_pytorch_and_attributes_the_loss(frac_bits, tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.pipeline.verify import VerifyOptions, verify
    from mpc_export.fixedpoint import FixedSpec

    data = need_shared(ROOT.parent / "shared" / "fixtures" / "cifar10_test.npz")
    build(BuildOptions(model=SEED_MODEL, out=tmp_path / "b", fx=FixedSpec(frac_bits=frac_bits, reading_precision=frac_bits)))
    report = verify(VerifyOptions(directory=tmp_path / "b", dataset=data, limit=IMAGES, onnx=False, min_agreement=0.0))
    stages = {row["stage"]: row for row in report["stages"]}
    loaded = np.load(data)
    float_acc, quant_acc, fixed_acc = quantized_torch_accuracy(frac_bits, loaded["x"][:IMAGES], loaded["y"][:IMAGES].astype(int))
    assert stages["float model"]["accuracy"] == pytest.approx(float_acc, abs=1.5 / IMAGES)
    assert stages["float, weights at 2^-F"]["accuracy"] == pytest.approx(quant_acc, abs=1.5 / IMAGES)
    assert stages["fixed-point reference"]["accuracy"] == pytest.approx(fixed_acc, abs=1.5 / IMAGES)
    assert stages["secure run (predicted)"]["accuracy"] == stages["fixed-point reference"]["accuracy"]  # exact: bit for bit
    if frac_bits == 5:  # coarse weights: the loss shows at the weight stage already
        assert quant_acc < float_acc - 0.02
        assert stages["float, weights at 2^-F"]["agreement_with_float"] < 0.98
