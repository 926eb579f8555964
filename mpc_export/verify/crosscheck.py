"""Float oracles for every layer: PyTorch forward hooks on the original model, and onnxruntime on an
ONNX export of it with each layer's output exposed as a graph output."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch


def torch_layer_outputs(module: torch.nn.Module, graph, x: np.ndarray, dtype=torch.float64) -> dict[str, np.ndarray]:
    """Output of the module named by each node's origin[-1] (node name -> array), via forward hooks."""
    module = module.to(dtype).eval()
    wanted = {node.origin[-1]: node.name for node in graph.nodes if node.origin}
    captured: dict[str, np.ndarray] = {}
    handles = []
    for name, sub in module.named_modules():
        if name in wanted:
            handles.append(sub.register_forward_hook(lambda m, i, o, key=wanted[name]: captured.__setitem__(key, o.detach().cpu().numpy())))
    try:
        with torch.no_grad():
            logits = module(torch.from_numpy(np.ascontiguousarray(x)).to(dtype))
    finally:
        for h in handles:
            h.remove()
    captured[graph.output.name] = logits.numpy()
    return captured


def _onnx_prefix(module_name: str) -> str:
    """Scope prefix the TorchScript exporter gives a module's nodes: "layer1.0.relu1" ->
    "/layer1/layer1.0/relu1/" (a Sequential's numbered child is named "<parent>.<index>")."""
    parts = module_name.split(".")
    scopes = []
    for i, part in enumerate(parts):
        scopes.append(f"{parts[i - 1]}.{part}" if part.isdigit() and i > 0 else part)
    return "/" + "/".join(scopes) + "/"


class OnnxOracle:
    """ONNX export (TorchScript exporter) of the float model with layer outputs as extra graph outputs."""

    def __init__(self, module: torch.nn.Module, graph):
        import onnx
        import onnxruntime as ort

        module = module.float().eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, torch.zeros((1, *graph.input_shape)), buffer, dynamo=False,
                              input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}})
        model = onnx.load_from_string(buffer.getvalue())
        existing = {o.name for o in model.graph.output}
        self.names: dict[str, str] = {}
        for node in graph.nodes:
            if not node.origin:
                continue
            if node is graph.output:
                self.names[node.name] = "logits"
                continue
            matches = []
            for origin in reversed(node.origin):  # a BatchNorm folded into its Conv leaves the Conv's output
                prefix = _onnx_prefix(origin)
                matches = [n for n in model.graph.node if n.name.startswith(prefix)]
                if matches:
                    break
            if matches:
                out = matches[-1].output[0]
                self.names[node.name] = out
                if out not in existing:
                    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                    existing.add(out)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        keys = list(self.names)
        outs = self.session.run([self.names[k] for k in keys], {"input": x.astype(np.float32)})
        return dict(zip(keys, outs))
