"""Read a CoreML model's interface (inputs, outputs, states, metadata) without loading it.

Works on any OS, because the runtime and the model manager must decide flavour, shapes and dtypes
before (or without) CoreML: an `.mlpackage` is read from its protobuf spec through coremltools; a
compiled `.mlmodelc` (what some published repos ship) from its `metadata.json`, with the states
taken from the `model.mil` text where the metadata does not list them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dictated.errors import ModelError

from . import contract

# CoreML ArrayFeatureType.ArrayDataType values (FeatureTypes.proto)
_PROTO_DTYPES = {
    65568: np.float32,
    65552: np.float16,
    65600: np.float64,
    131104: np.int32,
    131080: np.int8,
}
_NAME_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "double": np.float64,
    "float64": np.float64,
    "int32": np.int32,
    "int8": np.int8,
    "fp32": np.float32,
    "fp16": np.float16,
}


@dataclass(frozen=True)
class TensorSpec:
    """One input, output or state: dtype, default shape and, per dimension, an allowed range.

    `ranges[i]` is `(low, high)` for a flexible dimension (`high` -1 when unbounded) and None for a
    fixed one.
    """

    name: str
    dtype: type[np.generic]
    shape: tuple[int, ...]
    ranges: tuple[tuple[int, int] | None, ...] = ()

    @property
    def flexible(self) -> bool:
        return any(r is not None for r in self.ranges)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        for i, size in enumerate(shape):
            rng = self.ranges[i] if i < len(self.ranges) else None
            if rng is None:
                if size != self.shape[i]:
                    return False
            elif size < rng[0] or (rng[1] != -1 and size > rng[1]):
                return False
        return True

    def max_size(self, dim: int) -> int:
        """Largest size dimension `dim` accepts (-1 if unbounded)."""
        rng = self.ranges[dim] if dim < len(self.ranges) else None
        return self.shape[dim] if rng is None else rng[1]


@dataclass(frozen=True)
class ModelSignature:
    path: Path
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    states: Mapping[str, TensorSpec] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    op_types: frozenset[str] = frozenset()  # MIL op types used by the main function

    @property
    def quantized(self) -> bool:
        """Weights stored compressed (int8 / palettised), i.e. constexpr dequantisation ops."""
        return any("constexpr" in op.lower() for op in self.op_types)

    def input(self, name: str) -> TensorSpec:
        try:
            return self.inputs[name]
        except KeyError:
            raise ModelError(
                f"{self.path} has no input {name!r} (inputs: {', '.join(sorted(self.inputs))}); "
                "it is not a Cohere Transcribe package this runtime understands"
            ) from None


def read_signature(path: Path) -> ModelSignature:
    """The interface of an `.mlpackage` or `.mlmodelc` at `path`."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path} does not exist")
    if path.suffix == ".mlmodelc":
        return _read_compiled(path)
    if path.suffix in (".mlpackage", ".mlmodel"):
        return _read_package(path)
    raise ModelError(f"{path} is not a CoreML model (.mlpackage or .mlmodelc)")


# -- .mlpackage -------------------------------------------------------------------------------


def _read_package(path: Path) -> ModelSignature:
    try:
        from coremltools.models.utils import load_spec
    except ImportError as exc:  # pragma: no cover - coremltools is an extra
        from dictated.errors import MissingDependencyError
        from dictated.install_hint import pip_install_extra

        raise MissingDependencyError(
            "coremltools", "reading CoreML packages", pip_install_extra("coreml")
        ) from exc
    try:
        spec = load_spec(str(path))
    except Exception as exc:  # coremltools raises plain Exceptions for damaged packages
        raise ModelError(
            f"{path} cannot be read as a CoreML package ({exc}); it is damaged or incomplete. "
            "Run `dictated models verify` and download or export it again"
        ) from exc
    desc = spec.description
    inputs = {
        f.name: _proto_tensor(f.name, f.type.multiArrayType)
        for f in desc.input
        if f.type.HasField("multiArrayType")
    }
    outputs = {
        f.name: _proto_tensor(f.name, f.type.multiArrayType)
        for f in desc.output
        if f.type.HasField("multiArrayType")
    }
    states = {f.name: _proto_tensor(f.name, f.type.stateType.arrayType) for f in desc.state}
    metadata = dict(desc.metadata.userDefined)
    op_types: set[str] = set()
    if spec.WhichOneof("Type") == "mlProgram":
        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                op_types.update(op.type for op in block.operations)
    return ModelSignature(path, inputs, outputs, states, metadata, frozenset(op_types))


def _proto_tensor(name: str, array) -> TensorSpec:
    dtype = _PROTO_DTYPES.get(array.dataType)
    if dtype is None:
        raise ModelError(f"tensor {name!r} has an unsupported CoreML data type ({array.dataType})")
    shape = tuple(int(s) for s in array.shape)
    ranges: tuple[tuple[int, int] | None, ...] = (None,) * len(shape)
    flex = array.WhichOneof("ShapeFlexibility")
    if flex == "shapeRange":
        sizes = [(int(r.lowerBound), int(r.upperBound)) for r in array.shapeRange.sizeRanges]
        ranges = tuple(None if lo == hi else (lo, hi) for lo, hi in sizes)
        if not shape:
            shape = tuple(lo for lo, _ in sizes)
    elif flex == "enumeratedShapes":
        shapes = [tuple(s.shape) for s in array.enumeratedShapes.shapes]
        if not shape and shapes:
            shape = shapes[0]
        ranges = tuple(
            None
            if len({s[i] for s in shapes}) == 1
            else (min(s[i] for s in shapes), max(s[i] for s in shapes))
            for i in range(len(shape))
        )
    return TensorSpec(name, dtype, shape, ranges)


# -- .mlmodelc ----------------------------------------------------------------------------------

# `state<tensor<fp16, [1, 8, 108, 128]>> k_cache_0` in the main function's header of model.mil
_MIL_STATE = re.compile(r"state<tensor<(\w+),\s*\[([^\]]*)\]>>\s+(\w+)")


def _read_compiled(path: Path) -> ModelSignature:
    meta_path = path / "metadata.json"
    try:
        raw = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelError(
            f"{meta_path} is missing; the compiled model is incomplete. Download it again"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{meta_path} is not valid JSON ({exc}); download the model again"
        ) from exc
    meta = raw[0] if isinstance(raw, list) and raw else raw
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path} has an unexpected layout; download the model again")
    schema = meta.get("inputSchema", [])
    inputs = {t.name: t for t in (_json_tensor(e) for e in schema if not _is_state(e)) if t}
    outputs = {t.name: t for t in (_json_tensor(e) for e in meta.get("outputSchema", [])) if t}
    listed = [*meta.get("stateSchema", []), *(e for e in schema if _is_state(e))]
    states = {t.name: t for t in (_json_tensor(e) for e in listed) if t}
    mil = path / "model.mil"
    if not states and mil.exists():
        header = mil.read_text(errors="replace")[:200_000]
        for dtype, dims, name in _MIL_STATE.findall(header):
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
            states[name] = TensorSpec(
                name, _NAME_DTYPES.get(dtype.lower(), np.float16), shape, (None,) * len(shape)
            )
    for name in states:  # some compilers also list states among the inputs
        inputs.pop(name, None)
    metadata = {str(k): str(v) for k, v in (meta.get("userDefinedMetadata") or {}).items()}
    op_types = frozenset((meta.get("mlProgramOperationTypeHistogram") or {}).keys())
    return ModelSignature(path, inputs, outputs, states, metadata, op_types)


def _is_state(entry: Mapping[str, object]) -> bool:
    return str(entry.get("type", "")).lower() == "state"


def _json_tensor(entry: Mapping[str, object]) -> TensorSpec | None:
    name = str(entry.get("name", ""))
    dtype_name = str(entry.get("dataType", "")).lower()
    if not name or dtype_name not in _NAME_DTYPES:
        return None
    shape = tuple(int(x) for x in re.findall(r"-?\d+", str(entry.get("shape", ""))))
    ranges: tuple[tuple[int, int] | None, ...] = (None,) * len(shape)
    if str(entry.get("hasShapeFlexibility", "0")) == "1":
        if "shapeRange" in entry:
            pairs = re.findall(r"\[\s*(-?\d+)\s*,\s*(-?\d+)\s*\]", str(entry["shapeRange"]))
            ranges = tuple(None if int(lo) == int(hi) else (int(lo), int(hi)) for lo, hi in pairs)
        elif "enumeratedShapes" in entry:
            shapes = [
                tuple(int(x) for x in re.findall(r"-?\d+", s))
                for s in re.findall(r"\[([^\[\]]*)\]", str(entry["enumeratedShapes"]))
            ]
            shapes = [s for s in shapes if len(s) == len(shape)]
            if shapes:
                ranges = tuple(
                    None
                    if len({s[i] for s in shapes}) == 1
                    else (min(s[i] for s in shapes), max(s[i] for s in shapes))
                    for i in range(len(shape))
                )
    return TensorSpec(name, _NAME_DTYPES[dtype_name], shape, ranges)


# -- interpretation -----------------------------------------------------------------------------


def decoder_flavour(sig: ModelSignature) -> contract.DecoderFlavour:
    """Stateful if it has states; cache-external if caches are inputs (v2 when the attention mask
    has a fixed length, v1 when it grows with the step)."""
    if sig.states:
        return contract.DecoderFlavour.STATEFUL
    if contract.k_cache(0) in sig.inputs:
        mask = sig.input(contract.DEC_ATTENTION_MASK)
        return (
            contract.DecoderFlavour.CACHE_EXTERNAL_V1
            if mask.flexible
            else contract.DecoderFlavour.CACHE_EXTERNAL_V2
        )
    raise ModelError(
        f"{sig.path} is neither a stateful decoder (no states) nor a cache-external one (no "
        f"{contract.k_cache(0)!r} input); inputs: {', '.join(sorted(sig.inputs))}"
    )


def weight_precision(sig: ModelSignature) -> str:
    """ "int8" or "fp16"/"fp32" from our metadata, else from the ops (compressed weights) and dtypes."""
    declared = sig.metadata.get(contract.META_PRECISION)
    if declared:
        return declared
    if sig.quantized:
        return "int8"
    float_dtypes = [
        t.dtype
        for t in (*sig.inputs.values(), *sig.states.values())
        if np.issubdtype(t.dtype, np.floating)
    ]
    return "fp16" if np.float16 in float_dtypes else "fp32"
