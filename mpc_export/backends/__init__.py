"""Backends: the runtimes a build targets. A backend turns the lowered, quantized graph (backend-neutral:
the ops' geometry and declared schedules, ``ops/``) into its program files, prices the program, and runs
it; everything else (loading, folding, quantizing, the fixed-point reference, the data files, verify's
re-derivation and float oracles) is shared. One backend per subpackage:

  - ``mamba``: SCALE-MAMBA / FANNG-MPC (``fanng``, the default): a MAMBA program from Jinja templates,
    player 0's data on the reserved channels, FANNG's runtime;
  - ``mpspdz``: MP-SPDZ's honest-majority 3-party protocols (``mp-spdz``).

A build's manifest names its backend ("backend"; a manifest without one is a FANNG build)."""

from __future__ import annotations

from ..errors import UserError, VerificationFailed
from ..manifest import DEFAULT_BACKEND as DEFAULT, Manifest
from .base import Backend



def _registry() -> dict[str, Backend]:
    from .mamba import MambaBackend
    from .mpspdz import MpSpdzBackend

    return {backend.name: backend for backend in (MambaBackend(), MpSpdzBackend())}


def names() -> list[str]:
    return list(_registry())


def backend_named(name: str) -> Backend:
    """The backend of a command line's --backend: an unknown name is one clear error."""
    registry = _registry()
    if name not in registry:
        raise UserError(f"--backend {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def backend_of(manifest: Manifest) -> Backend:
    """The backend a build directory was written for (its manifest's "backend"; absent: FANNG)."""
    name = manifest.backend
    registry = _registry()
    if name not in registry:
        raise VerificationFailed(f"manifest.json: backend {str(name)[:40]!r} is not one of {', '.join(registry)}")
    return registry[name].for_manifest(manifest)


def checked_build(directory, trust_pickle: bool = False, trust_torchscript: bool = False):
    """The checks verify makes, before anything starts or is handed out: the manifest read, every file
    hashed, parsed and re-derived byte for byte from the model by the build's backend (VerificationFailed
    at the first difference). (manifest, FixedSpec, lowered graph with its parameters, backend); every
    path used afterwards comes from the entries just checked."""
    from ..verify.rederive import rederive
    from ..verify.reference import load_reference

    manifest, fx, graph, parsed, _ = load_reference(directory, None, trust_pickle, trust_torchscript)
    backend = backend_of(manifest)
    rederive(directory, manifest, graph, fx, parsed, backend)
    return manifest, fx, graph, backend


__all__ = ["Backend", "checked_build", "DEFAULT", "backend_named", "backend_of", "names"]
