"""shortcut_a: ResNet option-A shortcut, x[:, :, ::stride, ::stride] zero-padded with pad_lo / pad_hi
channels. Pure data movement: no arithmetic, no truncation, deviations pass through unchanged."""

from __future__ import annotations

import numpy as np

from .base import NonExpanding, Op
from .protocol import Schedule


class ShortcutA(NonExpanding, Op):
    name = "shortcut_a"
    executable = True
    template = "shortcut_a"
    input_layout = "padded"
    output_layouts = ("padded",)

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        s = node.attrs["stride"]
        return (c + node.attrs["pad_lo"] + node.attrs["pad_hi"], -(-h // s), -(-w // s))

    @classmethod
    def ref_float(cls, node, x):
        s = node.attrs["stride"]
        return np.pad(x[:, :, ::s, ::s], ((0, 0), (node.attrs["pad_lo"], node.attrs["pad_hi"]), (0, 0), (0, 0)))

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        return cls.ref_float(node, x)

    @classmethod
    def schedule(cls, node, fx):
        """Data movement only: no protocol step."""
        return Schedule([])

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.in_shapes[0]
        oc, oh, ow = node.shape
        return {"name": layout.ident(node), "source": layout.buffer_of_input(node).name, "target": layout.buffer(node).name,
                "channels_in": c, "in_plane": (h + 2) * (w + 2), "in_row": w + 2, "stride": node.attrs["stride"],
                "pad_lo": node.attrs["pad_lo"], "out_plane": (oh + 2) * (ow + 2), "out_rows": oh, "out_valid": ow,
                "out_columns": ow + 2, "out_offset": ow + 3, "height": oh, "width": ow, "channels_out": oc}
