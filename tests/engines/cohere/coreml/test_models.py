"""The CoreML model manager on local directories: layout discovery (our export and the published
repo's layouts), verification with messages naming the file and the fix, `models pull` file
selection from repo listings, and the `models` CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")
pytest.importorskip("transformers")

from dictated.engines.cohere.coreml import contract  # noqa: E402
from dictated.engines.cohere.coreml import pull as coreml_pull  # noqa: E402
from dictated.engines.cohere.coreml.models import find_layout, verify  # noqa: E402
from dictated.engines.cohere.coreml.signature import read_signature  # noqa: E402
from dictated.errors import ConfigError, ModelError  # noqa: E402
from tests.engines.cohere.coreml.exports import tiny_export  # noqa: E402

STATEFUL = "cohere_decoder_stateful.mlpackage"
EXTERNAL = "cohere_decoder_cache_external_v2.mlpackage"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny_export(tmp_path_factory)


@pytest.fixture
def copy(export, tmp_path):
    """A private copy of the export to damage."""
    target = tmp_path / "model"
    shutil.copytree(export, target, ignore=shutil.ignore_patterns("traced"))
    return target


@pytest.fixture
def published(export, tmp_path):
    """The published repo's layout (f16/ and q8/ folders, one 35 s-style encoder each, vocab.json
    at the root), built from our packages under the published names."""
    root = tmp_path / "published"
    for folder in ("f16", "q8"):
        shutil.copytree(
            export / "cohere_encoder_5s.mlpackage", root / folder / "cohere_encoder.mlpackage"
        )
        shutil.copytree(export / STATEFUL, root / folder / "cohere_decoder_stateful.mlpackage")
    shutil.copytree(export / EXTERNAL, root / "q8" / EXTERNAL)
    shutil.copy(export / "vocab.json", root / "vocab.json")
    return root


# -- layout ---------------------------------------------------------------------------------------


def test_layout_of_our_export(export):
    layout = find_layout(export)
    assert [b.path.name for b in layout.encoders] == [
        "cohere_encoder_2s.mlpackage",
        "cohere_encoder_5s.mlpackage",
    ]
    assert [(b.feature_frames, b.encoder_frames) for b in layout.encoders] == [(200, 25), (500, 63)]
    assert layout.decoder.name == STATEFUL  # the manifest's default_decoder
    assert layout.flavour is contract.DecoderFlavour.STATEFUL
    assert layout.vocab.name == "tokenizer.model" and layout.manifest == export / "manifest.json"


def test_layout_of_a_published_folder_prefers_cache_external_v2(published):
    layout = find_layout(published / "q8")
    assert [b.path for b in layout.encoders] == [published / "q8" / "cohere_encoder.mlpackage"]
    assert layout.decoder == published / "q8" / EXTERNAL  # measured best upstream
    assert layout.vocab == published / "vocab.json"  # found above the packages' folder
    assert find_layout(published / "f16").decoder.name == "cohere_decoder_stateful.mlpackage"


def test_two_encoders_for_one_length_are_ambiguous(published):
    with pytest.raises(
        ModelError, match=r"two encoders for 5 s .*f16.*q8.*point --model at the folder"
    ):
        find_layout(published)


def test_missing_parts_name_what_is_missing(copy):
    shutil.rmtree(copy / STATEFUL)
    shutil.rmtree(copy / EXTERNAL)
    with pytest.raises(
        ModelError, match=r"no decoder package .* export it again with `dictated models export"
    ):
        find_layout(copy)
    with pytest.raises(ModelError, match="does not exist"):
        find_layout(copy / "nowhere")


@pytest.mark.parametrize("states_in", ["model.mil", "inputSchema"])
def test_compiled_model_metadata_is_read(export, tmp_path, states_in):
    """A compiled .mlmodelc (what the published repo also ships) is read from its metadata.json,
    in the format CoreML's compiler writes (FeatureType::toDictionary in coremltools' C++), and its
    states from model.mil. Compiling needs macOS; test_macos.py checks a real one."""
    package_sig = read_signature(export / STATEFUL)
    compiled = tmp_path / "cohere_decoder_stateful.mlmodelc"
    compiled.mkdir()

    def entry(t):
        d = {
            "name": t.name,
            "type": "MultiArray",
            "dataType": {np.float16: "Float16", np.float32: "Float32", np.int32: "Int32"}[t.dtype],
            "shape": json.dumps(list(t.shape)),
            "isOptional": "0",
            "hasShapeFlexibility": "1" if t.flexible else "0",
        }
        if t.flexible:
            d["shapeRange"] = json.dumps(
                [list(r or (s, s)) for s, r in zip(t.shape, t.ranges, strict=True)]
            )
        return d

    state_entries = [{**entry(t), "type": "State"} for t in package_sig.states.values()]
    meta = {
        "inputSchema": [entry(t) for t in package_sig.inputs.values()]
        + (state_entries if states_in == "inputSchema" else []),
        "outputSchema": [entry(t) for t in package_sig.outputs.values()],
        "userDefinedMetadata": dict(package_sig.metadata),
        "mlProgramOperationTypeHistogram": {
            "Ios18.readState": 4,
            "Ios18.writeState": 4,
            "Ios18.linear": 20,
        },
    }
    (compiled / "metadata.json").write_text(json.dumps([meta]))
    states = ", ".join(f"state<tensor<fp16, [1, 2, 256, 32]>> {n}" for n in package_sig.states)
    if states_in == "model.mil":
        (compiled / "model.mil").write_text(
            f"program(1.3)\n{{\n    func main<ios18>({states}) {{\n"
        )
    sig = read_signature(compiled)
    for name, spec in package_sig.inputs.items():
        assert (sig.inputs[name].shape, sig.inputs[name].dtype, sig.inputs[name].ranges) == (
            spec.shape,
            spec.dtype,
            spec.ranges,
        )
    assert {n: (s.shape, s.dtype) for n, s in sig.states.items()} == {
        n: (s.shape, s.dtype) for n, s in package_sig.states.items()
    }
    assert sig.metadata == package_sig.metadata and not sig.quantized


# -- verify ---------------------------------------------------------------------------------------


def test_verify_an_intact_export(export):
    report = verify(export, hashes=True)
    assert report.hashed and report.files_checked == len(
        json.loads((export / "manifest.json").read_text())["files"]
    )


def weight_file(root, package=STATEFUL):
    return next((root / package).rglob("weight.bin"))


def test_verify_names_a_missing_weight_file_and_the_fix(copy):
    weight_file(copy).unlink()
    with pytest.raises(ModelError) as err:
        verify(copy)
    message = str(err.value)
    assert str(copy / STATEFUL) in message and "weight.bin is missing" in message
    assert "export it again with `dictated models export --model" in message


def test_verify_catches_truncated_and_corrupt_files(copy):
    weights = weight_file(copy)
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    with pytest.raises(
        ModelError, match=r"weight.bin has \d+ bytes, expected \d+ \(incomplete or damaged\)"
    ):
        verify(copy)
    weights.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])  # same size
    verify(copy)  # sizes alone cannot see it
    with pytest.raises(ModelError, match="weight.bin has the wrong sha256"):
        verify(copy, hashes=True)


def test_verify_without_a_manifest_checks_package_structure(copy):
    (copy / "manifest.json").unlink()
    verify(copy)
    (copy / STATEFUL / "Manifest.json").unlink()
    with pytest.raises(
        ModelError, match=r"cohere_decoder_stateful.mlpackage/Manifest.json is missing"
    ):
        verify(copy)


def test_verify_a_damaged_spec_and_vocabulary(copy):
    (copy / "manifest.json").unlink()
    spec = next((copy / EXTERNAL).rglob("model.mlmodel"))
    spec.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(
        ModelError, match="cannot be read as a CoreML package .* damaged or incomplete"
    ):
        verify(copy)
    shutil.rmtree(copy / EXTERNAL)
    (copy / "tokenizer.model").unlink()
    (copy / "vocab.json").write_text("[1, 2")
    with pytest.raises(ModelError, match=r"vocab.json cannot be read"):
        verify(copy)


# -- pull: choosing files from the repo listing --------------------------------------------------


def package_files(path):
    return [
        f"{path}/Manifest.json",
        f"{path}/Data/com.apple.CoreML/model.mlmodel",
        f"{path}/Data/com.apple.CoreML/weights/weight.bin",
    ]


def compiled_files(path):
    return [
        f"{path}/model.mil",
        f"{path}/coremldata.bin",
        f"{path}/metadata.json",
        f"{path}/weights/weight.bin",
    ]


# the layout FluidAudio downloads today (q8/ with the cache-external v2 decoder, compiled models)
CURRENT = [
    ".gitattributes",
    "README.md",
    "vocab.json",
    *package_files("f16/cohere_encoder.mlpackage"),
    *compiled_files("f16/cohere_encoder.mlmodelc"),
    *package_files("f16/cohere_decoder_stateful.mlpackage"),
    *compiled_files("q8/cohere_encoder.mlmodelc"),
    *package_files("q8/cohere_encoder.mlpackage"),
    *package_files("q8/cohere_decoder_stateful.mlpackage"),
    *compiled_files("q8/cohere_decoder_cache_external_v2.mlmodelc"),
    *compiled_files("f16/cohere_decoder_cache_external_v2.mlmodelc"),
    "q8/vocab.json",
]
# an older layout: stateful decoders only
OLDER = [f for f in CURRENT if "cache_external" not in f]


def test_default_variant_takes_the_measured_best_pair():
    sel = coreml_pull.select_files(CURRENT, coreml_pull.VARIANTS[coreml_pull.DEFAULT_VARIANT])
    assert sel.encoder == "q8/cohere_encoder.mlmodelc"  # compiled: no compile on first load
    assert sel.decoder == "f16/cohere_decoder_cache_external_v2.mlmodelc"  # fp16, as named
    assert sel.vocab == ("q8/vocab.json",)
    assert set(sel.files) == set(
        compiled_files(sel.encoder) + compiled_files(sel.decoder) + ["q8/vocab.json"]
    )
    without_f16 = [f for f in CURRENT if not f.startswith("f16/cohere_decoder_cache_external")]
    fallback = coreml_pull.select_files(
        without_f16, coreml_pull.VARIANTS[coreml_pull.DEFAULT_VARIANT]
    )
    assert fallback.decoder == "q8/cohere_decoder_cache_external_v2.mlmodelc"


def test_default_variant_falls_back_to_the_fp16_stateful_decoder():
    sel = coreml_pull.select_files(OLDER, coreml_pull.VARIANTS[coreml_pull.DEFAULT_VARIANT])
    assert (sel.encoder, sel.decoder) == (
        "q8/cohere_encoder.mlmodelc",
        "f16/cohere_decoder_stateful.mlpackage",
    )


# an older revision: FluidAudio's legacy pair, the cache-external v1 decoder (FP16, growing
# attention mask) in q8/, no v2 yet
V1_ONLY = [f for f in OLDER] + compiled_files("q8/cohere_decoder_cache_external.mlmodelc")


def test_default_variant_falls_back_to_v1_before_the_stateful_decoder():
    default = coreml_pull.VARIANTS[coreml_pull.DEFAULT_VARIANT]
    sel = coreml_pull.select_files(V1_ONLY, default)
    assert (sel.encoder, sel.decoder) == (
        "q8/cohere_encoder.mlmodelc",
        "q8/cohere_decoder_cache_external.mlmodelc",  # not f16/cohere_decoder_stateful
    )
    assert set(sel.files) == set(
        compiled_files(sel.encoder) + compiled_files(sel.decoder) + ["q8/vocab.json"]
    )
    with_f16_v1 = V1_ONLY + package_files("f16/cohere_decoder_cache_external.mlpackage")
    assert (
        coreml_pull.select_files(with_f16_v1, default).decoder
        == "f16/cohere_decoder_cache_external.mlpackage"
    )
    at_the_root = OLDER + package_files("cohere_decoder_cache_external.mlpackage")
    assert (
        coreml_pull.select_files(at_the_root, default).decoder
        == "cohere_decoder_cache_external.mlpackage"
    )
    # v2 wins wherever it is, v1 next to it or not
    both = CURRENT + compiled_files("q8/cohere_decoder_cache_external.mlmodelc")
    assert (
        coreml_pull.select_files(both, default).decoder
        == "f16/cohere_decoder_cache_external_v2.mlmodelc"
    )


@pytest.mark.parametrize("variant,folder", [("f16", "f16"), ("q8", "q8")])
def test_named_variants(variant, folder):
    sel = coreml_pull.select_files(CURRENT, coreml_pull.VARIANTS[variant])
    assert (sel.encoder, sel.decoder) == (
        f"{folder}/cohere_encoder.mlmodelc",
        f"{folder}/cohere_decoder_stateful.mlpackage",
    )


def test_named_variants_keep_their_stateful_decoders_at_v1_revisions():
    for variant, folder in (("f16", "f16"), ("q8", "q8")):
        sel = coreml_pull.select_files(V1_ONLY, coreml_pull.VARIANTS[variant])
        assert sel.decoder == f"{folder}/cohere_decoder_stateful.mlpackage"


def test_a_listing_without_the_files_is_a_clear_error():
    listing = [f for f in CURRENT if not f.startswith("q8/")]
    with pytest.raises(ModelError, match=r"no encoder in q8/ .*encoders: f16/cohere_encoder"):
        coreml_pull.select_files(listing, coreml_pull.VARIANTS["q8"])
    with pytest.raises(ConfigError, match="variant"):
        coreml_pull.pull("int4")


def test_pull_records_and_verifies_what_it_downloaded(export, tmp_path, monkeypatch):
    """`pull` end to end against a local mirror of the repo standing in for the hub (which this
    machine cannot reach): listing, download into --dest, size/sha256 check against the hub's
    record, dictated-pull.json, verify."""
    mirror = tmp_path / "mirror"
    shutil.copytree(
        export / "cohere_encoder_5s.mlpackage", mirror / "q8" / "cohere_encoder.mlpackage"
    )
    shutil.copytree(export / EXTERNAL, mirror / "q8" / EXTERNAL)
    shutil.copy(export / "vocab.json", mirror / "vocab.json")
    listing = sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file())
    from dictated import downloads
    from dictated.engines.cohere.coreml.models import sha256_file

    def download(repo_id, *, revision=None, allow_patterns=None, cache_dir=None, local_dir=None):
        assert repo_id == coreml_pull.REPO_ID and revision == "abc123"
        for rel in allow_patterns:
            (local_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mirror / rel, local_dir / rel)
        return local_dir

    remote = {
        rel: {"size": (mirror / rel).stat().st_size, "sha256": sha256_file(mirror / rel)}
        for rel in listing
    }
    monkeypatch.setattr(downloads, "list_repo_files", lambda repo_id, revision=None: listing)
    monkeypatch.setattr(downloads, "download_snapshot", download)
    monkeypatch.setattr(
        coreml_pull,
        "_remote_records",
        lambda repo, rev, files: ("abc123", {f: remote[f] for f in files}),
    )

    # huggingface_hub keeps per-file metadata under .cache/, in folders named like the packages
    hidden = (
        tmp_path
        / "dest"
        / ".cache"
        / "huggingface"
        / "download"
        / "q8"
        / "cohere_encoder.mlpackage"
    )
    hidden.mkdir(parents=True)
    (hidden / "Manifest.json.metadata").write_text("etag")
    dest = coreml_pull.pull(dest=tmp_path / "dest", revision="main")
    record = json.loads((dest / "dictated-pull.json").read_text())
    assert record["source"] == {
        "kind": "pull",
        "repo": coreml_pull.REPO_ID,
        "revision": "abc123",
        "variant": coreml_pull.DEFAULT_VARIANT,
    }
    assert set(record["files"]) == set(listing)
    layout = find_layout(dest)
    assert layout.decoder.name == EXTERNAL and layout.vocab.name == "vocab.json"

    remote["vocab.json"]["sha256"] = "0" * 64  # the hub says otherwise: a damaged download
    with pytest.raises(
        ModelError,
        match=r"(?s)vocab.json does not match the hub's sha256.*Delete those files and run `dictated models pull --variant",
    ):
        coreml_pull.pull(dest=tmp_path / "dest2")
    weight = next(dest.rglob("weight.bin"))
    weight.write_bytes(b"x")
    with pytest.raises(ModelError, match="pull --variant int8-encoder\\+fp16-decoder --dest"):
        verify(dest)


# -- CLI ------------------------------------------------------------------------------------------


def private_data_dir(monkeypatch, tmp_path):
    """Point the user data dir (where models live) at tmp_path; platformdirs ignores XDG_* on macOS."""
    from dictated import paths

    monkeypatch.setattr(paths, "data_dir", lambda: tmp_path / "data")


def test_cli_verify_and_list(export, copy, tmp_path, capsys, monkeypatch):
    from dictated.cli import main

    assert main(["models", "verify", str(export), "--hashes"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "sizes and sha256" in out and "cohere_encoder_2s.mlpackage (2 s)" in out
    weight_file(copy).unlink()
    assert main(["models", "verify", str(copy)]) == 2  # a broken model: a restart cannot fix it
    assert "weight.bin is missing" in capsys.readouterr().err

    private_data_dir(monkeypatch, tmp_path)
    assert main(["models", "list"]) == 0
    assert "no CoreML models" in capsys.readouterr().out
    assert main(["models", "list", "--dir", str(export.parent)]) == 0
    listing = capsys.readouterr().out
    assert export.name in listing and "2s,5s" in listing and "stateful fp16" in listing


def test_the_engine_finds_models_by_path_name_or_default(export, tmp_path, monkeypatch):
    from dictated.engines.cohere.coreml.engine import resolve_model_dir
    from dictated.engines.cohere.coreml.models import models_root

    private_data_dir(monkeypatch, tmp_path)
    with pytest.raises(ModelError, match=r"no CoreML models found in .*run `dictated models pull`"):
        resolve_model_dir(None)
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "missing"))
    assert resolve_model_dir(str(export)) == export
    shutil.copytree(export, models_root() / "export-fp16", ignore=shutil.ignore_patterns("traced"))
    assert resolve_model_dir("export-fp16") == models_root() / "export-fp16"
    assert resolve_model_dir(None) == models_root() / "export-fp16"  # the only one installed
    (models_root() / coreml_pull.DEFAULT_VARIANT).mkdir()
    assert (
        resolve_model_dir(None) == models_root() / coreml_pull.DEFAULT_VARIANT
    )  # pulled default first


# -- which macOS a layout needs -------------------------------------------------------------------


def test_macos_15_is_named_for_stateful_decoders_and_int8_encoders(tmp_path_factory, export, copy):
    from dictated.engines.cohere.coreml.engine import macos_problem

    stateful = find_layout(export)  # fp16 encoders, stateful decoder
    assert macos_problem(stateful, "15.1") is None and macos_problem(stateful, "") is None
    problem = macos_problem(stateful, "14.6")
    assert problem.startswith("the stateful decoder cohere_decoder_stateful.mlpackage (CoreML")
    assert "need macOS 15 (this is 14.6)" in problem and "int8" not in problem

    shutil.rmtree(copy / STATEFUL)
    (copy / "manifest.json").unlink()
    external = find_layout(copy)  # fp16 encoders + cache-external v2: what macOS 14 can run
    assert external.flavour is contract.DecoderFlavour.CACHE_EXTERNAL_V2
    assert macos_problem(external, "14.6") is None

    int8 = find_layout(tiny_export(tmp_path_factory, precision="int8"))
    problem = macos_problem(int8, "14.6")
    assert "the int8 encoder cohere_encoder_2s.mlpackage, cohere_encoder_5s.mlpackage" in problem
    assert macos_problem(int8, "15.0") is None
