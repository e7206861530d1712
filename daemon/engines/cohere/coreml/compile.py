"""Compile each .mlpackage once and keep the compiled .mlmodelc, keyed by the package's content.

CoreML compiles an .mlpackage (and specialises it for the Neural Engine) every time one is loaded
from source: 20 s to minutes for Cohere Transcribe's encoder. A compiled .mlmodelc loads in about a
second. So the first load compiles into the cache directory and later starts load the compiled
copy. The key is a sha256 over the package's files, so a re-exported or re-downloaded package never
reuses a stale compilation; hashing gigabytes on every start would cost seconds, so the hash is
memoised against the files' (size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from dictated.errors import ModelError

from .models import package_files, sha256_file

log = logging.getLogger(__name__)

Compiler = Callable[[Path, Path], None]  # (package, destination .mlmodelc)


def coremltools_compile(package: Path, destination: Path) -> None:
    from coremltools.models.utils import compile_model

    compile_model(str(package), str(destination))


class CompileCache:
    """`<root>/compiled/<name>-<key>.mlmodelc`, plus `<root>/compiled/keys.json` (hash memo)."""

    def __init__(self, root: Path, compiler: Compiler = coremltools_compile):
        self.root = Path(root) / "compiled"
        self.compiler = compiler
        self._memo_path = self.root / "keys.json"

    def content_key(self, package: Path) -> str:
        """sha256 over every file's relative path and content (memoised by size and mtime)."""
        package = Path(package).resolve()
        files = package_files(package)
        fingerprint = [
            (f.relative_to(package).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
            for f in files
        ]
        memo = self._read_memo()
        entry = memo.get(str(package))
        if entry and entry.get("fingerprint") == fingerprint:
            return str(entry["key"])
        digest = hashlib.sha256()
        for rel, _, _ in fingerprint:
            digest.update(rel.encode())
            digest.update(bytes.fromhex(sha256_file(package / rel)))
        key = digest.hexdigest()[:32]
        memo[str(package)] = {"fingerprint": fingerprint, "key": key}
        self._write_memo(memo)
        return key

    def compiled_path(self, package: Path) -> Path:
        package = Path(package)
        return self.root / f"{package.stem}-{self.content_key(package)}.mlmodelc"

    def compiled(self, package: Path) -> Path:
        """The compiled model for `package`, compiling it first if this content was never compiled."""
        target = self.compiled_path(package)
        if (target / "coremldata.bin").exists():
            log.info("loading compiled %s from the cache", package.name)
            return target
        log.warning(
            "compiling %s for this Mac (first start only: 20 s to a few minutes for large models); "
            "the result is cached in %s",
            package.name,
            self.root,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".partial-{target.name}")  # compile_model wants *.mlmodelc
        shutil.rmtree(partial, ignore_errors=True)
        start = time.perf_counter()
        try:
            self.compiler(package, partial)
        except Exception as exc:  # coremltools raises plain Exceptions
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelError(
                f"CoreML could not compile {package}: {exc}. Run `dictated models verify` on its folder"
            ) from exc
        shutil.rmtree(target, ignore_errors=True)
        partial.replace(target)
        log.warning("compiled %s in %.1f s", package.name, time.perf_counter() - start)
        self._prune()
        return target

    def _prune(self) -> None:
        """Drop compilations no known package content maps to any more (re-exports, new downloads)."""
        keys = {
            str(entry.get("key")) for entry in self._read_memo().values() if isinstance(entry, dict)
        }
        for compiled in self.root.glob("*.mlmodelc"):
            if compiled.stem.rsplit("-", 1)[-1] not in keys:
                log.info("removing stale compiled model %s", compiled)
                shutil.rmtree(compiled, ignore_errors=True)

    def _read_memo(self) -> dict:
        try:
            data = json.loads(self._memo_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        for entry in data.values():  # JSON turns the fingerprint tuples into lists
            if isinstance(entry, dict) and isinstance(entry.get("fingerprint"), list):
                entry["fingerprint"] = [tuple(item) for item in entry["fingerprint"]]
        return data

    def _write_memo(self, memo: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._memo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        tmp.replace(self._memo_path)
