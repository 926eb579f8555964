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


def export_onnx(module: torch.nn.Module, graph):
    """ONNX export (TorchScript exporter, float32, dynamic batch) of a PyTorch float model."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.float().eval(), torch.zeros((1, *graph.input_shape)), buffer, dynamo=False,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}})
    return onnx.load_from_string(buffer.getvalue())


class OnnxOracle:
    """onnxruntime on an ONNX model of the float network, with layer outputs as extra graph outputs.

    by="scope": the model was exported from PyTorch here and nodes carry module names (state_dict
    front end); by="tensor": the nodes' origins are the ONNX tensor names (ONNX / TorchScript front ends).
    A model with a fixed batch of 1 is run one image at a time."""

    def __init__(self, model, graph, by: str = "scope"):
        import onnx
        import onnxruntime as ort

        existing = {o.name for o in model.graph.output}
        self.input_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
        dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        self.fixed_batch = dim.dim_value if dim.HasField("dim_value") else None
        self.names: dict[str, str] = {}
        produced = {o for n in model.graph.node for o in n.output}  # a re-export may name tensors otherwise
        for node in graph.nodes:
            if not node.origin:
                continue
            if node is graph.output and (by != "tensor" or node.origin[-1] not in produced):
                self.names[node.name] = model.graph.output[0].name
                continue
            if by == "tensor":  # the last tensor the node computes (a dropped trailing Softmax's input, not its output)
                out = node.origin[-1]
                self.names[node.name] = out
                if out not in existing:
                    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                    existing.add(out)
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
        elem = next(i for i in model.graph.input if i.name == self.input_name).type.tensor_type.elem_type
        self.input_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output for the images ``x`` (N, C, H, W), in the model's own input type (float32,
        float64 or float16), as float64; a model with a fixed batch of B is run B images at a time (the last
        group padded with zero images, their outputs dropped)."""
        keys = list(self.names)
        wanted = [self.names[k] for k in keys]
        x = x.astype(self.input_dtype)
        if self.fixed_batch:
            parts = []
            for start in range(0, len(x), self.fixed_batch):
                group = x[start:start + self.fixed_batch]
                padded = np.concatenate([group, np.zeros((self.fixed_batch - len(group), *x.shape[1:]), x.dtype)])
                parts.append([out[:len(group)] for out in self.session.run(wanted, {self.input_name: padded})])
            outs = [np.concatenate([p[j] for p in parts]) for j in range(len(keys))]
        else:
            outs = self.session.run(wanted, {self.input_name: x})
        return {key: np.asarray(out, dtype=np.float64) for key, out in zip(keys, outs)}
