"""Checkpoints saved while torch.nn.utils.prune is still attached (``<layer>.weight_orig`` and
``<layer>.weight_mask`` instead of ``<layer>.weight``) load, for every known architecture.

Each model is built and pruned in the test with torch.nn.utils.prune (global L1 magnitude pruning), its
state_dict saved without prune.remove and loaded. The oracle is PyTorch itself: the same model after
prune.remove (its weights, compared exactly, zeros included) and its forward (float64). A mask that is
not 0/1, of another shape than its weight_orig, or a weight_orig without a mask, is one line."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from conftest import DATASET, SHARED, need_shared, run_cli
from small_models import randomise_batchnorm
from mpc_export.load.torch_models import CustResNet, PrunedResNet, ResNetA

RESNET20_FIXTURE = SHARED / "fixtures" / "resnet20_cifar10.pth"


def narrow_architectures() -> dict:
    """One narrow instance of each known architecture (32 x 32 inputs, as the state_dict front end expects)."""
    return {
        "pruned_resnet": lambda: PrunedResNet(widths=(4, 8, 8, 8, 16, 16), hidden=8),
        "resnet20": lambda: ResNetA(8, [[(8, 8)] * 3, [(16, 16)] * 3, [(32, 32)] * 3]),
        "resnet18": lambda: ResNetA(8, [[(8, 8)] * 2, [(16, 16)] * 2, [(32, 32)] * 2, [(64, 64)] * 2], projection=True),
        "custresnet": lambda: CustResNet(widths=(8, 16, 32, 64)),
    }


def prunable_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def pruned(model: torch.nn.Module, amount: float, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics, then global L1 pruning of every conv and linear weight, still attached."""
    torch.manual_seed(seed)
    randomise_batchnorm(model, mean=0.2, bias=0.1)
    prune.global_unstructured([(m, "weight") for _, m in prunable_layers(model)], prune.L1Unstructured, amount=amount)
    return model.eval()


def removed_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The state_dict after prune.remove on every pruned layer: what the loader must reproduce."""
    for _, m in prunable_layers(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return {k: v.detach().double().numpy() for k, v in model.state_dict().items()}


def save_attached(model: torch.nn.Module, path):
    state = model.state_dict()
    layers = [name for name, _ in prunable_layers(model)]
    assert all(f"{name}.weight_orig" in state and f"{name}.weight" not in state for name in layers)
    torch.save(state, path)
    return path


def assert_loads_as_removed(path, model: torch.nn.Module, images: np.ndarray) -> None:
    """The loaded IR's weights equal PyTorch's after prune.remove, zeros exact; its float64 outputs equal
    PyTorch's forward."""
    from mpc_export.load import load_model
    from mpc_export.reference.run import run_float

    graph = load_model(path)
    expected = removed_state(model)
    compared = set()
    for node in graph.nodes:
        if "weight" in node.params and node.op in ("conv2d", "linear"):
            key = f"{node.origin[-1]}.weight"
            assert np.array_equal(node.params["weight"], expected[key]), key
            assert int((node.params["weight"] == 0).sum()) == int((expected[key] == 0).sum()), key
            compared.add(node.origin[-1])
    assert compared == {name for name, _ in prunable_layers(model)}
    with torch.no_grad():
        reference = model.double()(torch.from_numpy(images)).numpy()
    got = run_float(graph, images)[graph.nodes[-1].name]
    np.testing.assert_allclose(got, reference, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(reference).max())))


IMAGES = np.random.default_rng(0).uniform(-1.0, 1.0, (3, 3, 32, 32))


@pytest.mark.parametrize("arch,amount", [("pruned_resnet", 0.5), ("resnet20", 0.5), ("custresnet", 0.5),
                                         ("resnet18", 0.5), ("resnet18", 0.75), ("resnet18", 0.9)])
def test_a_checkpoint_with_the_pruning_attached_loads_as_after_prune_remove(arch, amount, tmp_path):
    model = pruned(narrow_architectures()[arch](), amount)
    masks = [m.weight_mask for _, m in prunable_layers(model)]
    zeros = sum(int((mask == 0).sum()) for mask in masks)
    assert zeros >= amount * sum(mask.numel() for mask in masks) - 1
    path = save_attached(model, tmp_path / f"{arch}_{int(amount * 100)}.pth")
    assert_loads_as_removed(path, model, IMAGES)


def test_the_verify_cross_check_module_applies_the_masks(tmp_path):
    from mpc_export.load.torch_models import torch_module

    model = pruned(narrow_architectures()["resnet18"](), 0.75, seed=3)
    path = save_attached(model, tmp_path / "r18.pth")
    rebuilt = torch_module("resnet18", path).double()
    expected = removed_state(model)
    for key, value in rebuilt.state_dict().items():
        assert np.array_equal(value.numpy(), expected[key]), key


def test_the_real_resnet20_pruned_with_the_mask_attached(tmp_path):
    """The trained fixture, 50 % pruned and saved with its masks: the same weights and forward as PyTorch,
    and the same class on real CIFAR-10 images."""
    model = ResNetA(16, [[(16, 16)] * 3, [(32, 32)] * 3, [(64, 64)] * 3])
    model.load_state_dict(torch.load(need_shared(RESNET20_FIXTURE), weights_only=True))
    prune.global_unstructured([(m, "weight") for _, m in prunable_layers(model)], prune.L1Unstructured, amount=0.5)
    model.eval()
    pixels = np.load(need_shared(DATASET))["x"][:8].transpose(0, 3, 1, 2) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1), np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    assert_loads_as_removed(save_attached(model, tmp_path / "resnet20_pruned.pth"), model, (pixels - mean) / std)


# ---- malformed pruning pairs: one clear line each


@pytest.fixture(scope="module")
def attached_state():
    """A narrow ResNet-20's state_dict with its pruning attached (tensors)."""
    return pruned(narrow_architectures()["resnet20"](), 0.5).state_dict()


MASK = "layer2.0.conv1.weight_mask"


def _refused(state: dict, tmp_path_factory, capsys) -> str:
    path = tmp_path_factory.mktemp("bad") / "bad.pth"
    torch.save(state, path)
    code, _, err = run_cli(["build", path, "--out", path.parent / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (path.parent / "out").exists()
    return err


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(-4.0, 4.0, width=32).filter(lambda v: v not in (0.0, 1.0)), index=st.integers(0, 10**6))
def test_a_mask_that_is_not_0_or_1_is_one_line(attached_state, value, index, tmp_path_factory, capsys):
    state = dict(attached_state)
    mask = state[MASK].clone()
    mask.view(-1)[index % mask.numel()] = value
    state[MASK] = mask
    err = _refused(state, tmp_path_factory, capsys)
    assert MASK in err and "0 and 1" in err, err


def test_a_mask_of_another_shape_is_one_line(attached_state, tmp_path_factory, capsys):
    state = dict(attached_state)
    state[MASK] = state[MASK][:, :1].clone()
    err = _refused(state, tmp_path_factory, capsys)
    assert MASK in err and "shape" in err, err


def test_a_weight_orig_without_its_mask_is_one_line(attached_state, tmp_path_factory, capsys):
    state = {k: v for k, v in attached_state.items() if k != MASK}
    err = _refused(state, tmp_path_factory, capsys)
    assert "layer2.0.conv1.weight_orig" in err and "mask" in err, err


def test_check_model_lists_the_mask_problem(attached_state, tmp_path):
    from mpc_export.load.model import check_model

    state = dict(attached_state)
    state[MASK] = state[MASK] * 0.5
    path = tmp_path / "half.pth"
    torch.save(state, path)
    problems = check_model(path)
    assert len(problems) == 1 and MASK in problems[0], problems
    good = tmp_path / "good.pth"
    torch.save(attached_state, good)
    assert check_model(good) == []
