"""A CoreML stand-in for Linux: executes the very TorchScript modules the packages were converted from.

CoreML's `predict` and `make_state` exist only on macOS. `dictated models export --keep-traced`
saves, next to each package, the traced module that coremltools converted into it; this backend
loads that module for a package and runs it with CoreML's calling convention, so `CoreMLRuntime`'s
own code (bucket choice, padding, masks, positions, state threading, dtype handling) runs unchanged.

It is strict where CoreML is strict: every predict must pass exactly the package's inputs (read
from the real converted spec) with the spec's dtypes and an accepted shape; outputs are returned in
the spec's dtypes (fp16 outputs are rounded to fp16, as CoreML returns them); a stateful package
needs a state from `make_state()`, which starts as zeros. What it cannot show is CoreML's own fp16
arithmetic: that is what `test_macos.py` checks on a Mac.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dictated.engines.cohere.coreml.models import EXPORT_MANIFEST
from dictated.engines.cohere.coreml.signature import read_signature


class StandInError(AssertionError):
    """The runtime called a package in a way CoreML would reject."""


class TracedStandInBackend:
    def __init__(self):
        self.loaded: list[tuple[Path, str]] = []  # (package, compute units) in load order

    def load(self, path: Path, compute_units: str) -> TracedStandInModel:
        path = Path(path)
        manifest = json.loads((path.parent / EXPORT_MANIFEST).read_text())
        traced = manifest.get("traced", {}).get(path.name)
        if traced is None:
            raise StandInError(f"{path} was exported without --keep-traced")
        self.loaded.append((path, compute_units))
        with (
            warnings.catch_warnings()
        ):  # torch 2.13 deprecates TorchScript; coremltools converts it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path.parent / traced))
        return TracedStandInModel(path, module)


class TracedStandInModel:
    def __init__(self, path: Path, module: torch.jit.ScriptModule):
        self.path = path
        self.module = module.eval()
        self.sig = read_signature(path)
        # dtypes the module was traced with, in forward order (graph input 0 is `self`)
        self.trace_dtypes = [inp.type().dtype() for inp in list(module.graph.inputs())[1:]]
        if len(self.trace_dtypes) != len(self.sig.inputs):
            raise StandInError(
                f"{path}: traced module takes {len(self.trace_dtypes)} inputs, spec has {len(self.sig.inputs)}"
            )
        self.predictions = 0

    def make_state(self) -> dict[str, torch.Tensor]:
        if not self.sig.states:
            raise StandInError(f"{self.path} has no states; make_state() is for stateful models")
        return {
            name: torch.zeros(spec.shape, dtype=torch.float16)
            for name, spec in self.sig.states.items()
        }

    def predict(self, inputs: Mapping[str, np.ndarray], state=None) -> dict[str, np.ndarray]:
        if set(inputs) != set(self.sig.inputs):
            raise StandInError(
                f"{self.path.name}: inputs {sorted(inputs)} != spec {sorted(self.sig.inputs)}"
            )
        args = []
        for (name, spec), dtype in zip(self.sig.inputs.items(), self.trace_dtypes, strict=True):
            value = inputs[name]
            if not isinstance(value, np.ndarray) or value.dtype != spec.dtype:
                raise StandInError(
                    f"{self.path.name}: {name} is {getattr(value, 'dtype', type(value))}, spec says {np.dtype(spec.dtype)}"
                )
            if not spec.accepts(tuple(value.shape)):
                raise StandInError(
                    f"{self.path.name}: {name} shape {value.shape} not accepted by spec {spec.shape} {spec.ranges}"
                )
            args.append(torch.from_numpy(np.array(value)).to(dtype))
        if bool(self.sig.states) != (state is not None):
            raise StandInError(
                f"{self.path.name}: state {'missing' if state is None else 'given to a stateless model'}"
            )
        with torch.no_grad():
            if state is not None:
                for name, value in state.items():
                    getattr(self.module, name).copy_(value)
            out = self.module(*args)
            if state is not None:
                for name in state:
                    state[name] = getattr(self.module, name).clone()
        outs = out if isinstance(out, tuple) else (out,)
        self.predictions += 1
        return {
            name: outs[i].detach().numpy().astype(spec.dtype)
            for i, (name, spec) in enumerate(self.sig.outputs.items())
        }
