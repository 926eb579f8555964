"""The interface a backend implements (see the package docstring). Every method is given the lowered,
quantized graph (``ir.Graph``, parameters attached) and the build's ``FixedSpec``; none reads a path from
the model or the manifest except through the entries ``verify`` has just re-derived."""

from __future__ import annotations

from ..export.products import Product


class Backend:
    name: str = ""
    runtime_name: str = ""  # the runtime in words, for messages

    default_convolution = "winograd"  # --convolution when the command line names none

    def with_protocol(self, protocol: str | None) -> "Backend":
        """This backend with the command line's --protocol (None: its default)."""
        if protocol is not None:
            from ..errors import UserError

            raise UserError(f"--protocol is for --backend mp-spdz; {self.runtime_name} has one protocol")
        return self

    def for_manifest(self, manifest) -> "Backend":
        """This backend configured as a build recorded it (``manifest.Manifest``), e.g. its protocol."""
        return self

    def check_options(self, fx, debug: bool) -> None:
        """Refuse, in one line, an option this backend cannot honour (before anything is written)."""

    def check_graph(self, graph, fx) -> None:
        """Refuse, in one line, a lowered graph this backend's program cannot compute (an op it has no kernel
        for, a declared step its domain cannot hold), naming the layer and what would fit."""

    def program_products(self, graph, fx, params, inputs, x_int, debug: bool, pattern) -> list[Product]:
        """The backend's files of a build (its program and what its runtime reads beside the shared data
        files), in the manifest's order. ``x_int``: the executions' encoded inputs (N, C, H, W)."""
        raise NotImplementedError

    def manifest_fields(self, graph, fx, params, inputs, pattern, debug: bool) -> dict:
        """The manifest's backend-specific entries ("program", "channel_open_order", "cost", ...)."""
        raise NotImplementedError

    def cost(self, graph, fx, params) -> dict:
        """The cost report: per-layer rows and totals (see the backend's cost module)."""
        raise NotImplementedError
