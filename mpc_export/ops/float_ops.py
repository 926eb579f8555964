"""Float IR ops that front ends produce; passes fold or fuse them before the fixed-point stages."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ._kernels import conv2d_float, window_out
from .base import Op


class Conv2d(Op):
    """2-D convolution; weight OIHW, bias O (zeros when the model has none); attrs stride, padding."""

    name = "conv2d"
    params = (("weight", "OIHW"), ("bias", "O"))

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        o, i, kh, kw = node.params["weight"].shape
        if i != c:
            raise UserError(f"{node.name}: weight expects {i} input channels, the input has {c}")
        s, p = node.attrs.get("stride", 1), node.attrs.get("padding", 0)
        return (o, window_out(h, kh, s, p), window_out(w, kw, s, p))

    @classmethod
    def ref_float(cls, node, x):
        return conv2d_float(x, node.params["weight"], node.params["bias"], node.attrs.get("stride", 1), node.attrs.get("padding", 0))

    @classmethod
    def macs(cls, node, graph):
        o, i, kh, kw = node.params["weight"].shape
        return int(o * i * kh * kw * node.shape[1] * node.shape[2])


class BatchNorm(Op):
    """Eval-mode batch normalisation; gamma, beta, mean, var per channel (C), attribute eps."""

    name = "batchnorm"
    params = (("gamma", "C"), ("beta", "C"), ("mean", "C"), ("var", "C"))

    @classmethod
    def ref_float(cls, node, x):
        p = node.params
        scale = p["gamma"] / np.sqrt(p["var"] + node.attrs["eps"])
        return (x - p["mean"][:, None, None]) * scale[:, None, None] + p["beta"][:, None, None]


class Affine(Op):
    """Per-channel y = new_gamma * x + new_beta (folded batch normalisation)."""

    name = "affine"
    params = (("new_gamma", "C"), ("new_beta", "C"))

    @classmethod
    def ref_float(cls, node, x):
        p = node.params
        return x * p["new_gamma"][:, None, None] + p["new_beta"][:, None, None]


class Relu(Op):
    name = "relu"

    @classmethod
    def ref_float(cls, node, x):
        return np.maximum(x, 0.0)


class GlobalAvgPoolFloat(Op):
    """Mean over the map as front ends see it (ONNX GlobalAveragePool, avg_pool2d over the whole map)."""

    name = "mean_pool"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return (in_shapes[0][0], 1, 1)

    @classmethod
    def ref_float(cls, node, x):
        return x.mean(axis=(2, 3), keepdims=True)


class Flatten(Op):
    """CHW -> (C*H*W,) in C order."""

    name = "flatten"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return (int(np.prod(in_shapes[0])),)

    @classmethod
    def ref_float(cls, node, x):
        return x.reshape(x.shape[0], -1)


class Linear(Op):
    """Fully connected layer; weight (out, in), bias (out)."""

    name = "linear"
    params = (("weight", "out x in"), ("bias", "out"))

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        n = int(np.prod(in_shapes[0]))
        out, fan_in = node.params["weight"].shape
        if n != fan_in:
            raise UserError(f"{node.name}: weight expects {fan_in} inputs, the input has shape {in_shapes[0]}")
        return (out,)

    @classmethod
    def ref_float(cls, node, x):
        return x.reshape(x.shape[0], -1) @ node.params["weight"].T + node.params["bias"]

    @classmethod
    def macs(cls, node, graph):
        return int(node.params["weight"].size)


class Identity(Op):
    """Dropout and other layers that are the identity at inference."""

    name = "identity"

    @classmethod
    def ref_float(cls, node, x):
        return x


class Subsample(Op):
    """x[:, :, ::step_h, ::step_w] (an ONNX Slice); fused with channel_pad into shortcut_a."""

    name = "subsample"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        return (c, -(-h // node.attrs["step_h"]), -(-w // node.attrs["step_w"]))

    @classmethod
    def ref_float(cls, node, x):
        return x[:, :, :: node.attrs["step_h"], :: node.attrs["step_w"]]


class ChannelPad(Op):
    """Zero channels before (pad_lo) and after (pad_hi) the input's (an ONNX Pad on axis 1)."""

    name = "channel_pad"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        return (c + node.attrs["pad_lo"] + node.attrs["pad_hi"], h, w)

    @classmethod
    def ref_float(cls, node, x):
        return np.pad(x, ((0, 0), (node.attrs["pad_lo"], node.attrs["pad_hi"]), (0, 0), (0, 0)))
