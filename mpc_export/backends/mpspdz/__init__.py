"""MP-SPDZ (backend ``mp-spdz``): placeholder until the backend lands."""

from __future__ import annotations

from ...errors import UserError
from ..base import Backend


class MpSpdzBackend(Backend):
    name = "mp-spdz"
    runtime_name = "MP-SPDZ"

    def check_options(self, fx, debug):
        raise UserError("--backend mp-spdz is not available yet")
