"""weights.py's packaged-model cache with tiny chunk packages: the assembled file is trusted for its hash, not for
its size and modification time, and a torn sidecar costs a re-hash, never a failed start."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from secondnature import weights
from secondnature.weights import Packaged, assemble, file_digest

CHUNKS = (b"GGUF" + b"first chunk " * 1000, b"second chunk " * 1000)


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Packaged:
    """Two installed chunk packages (sntest_part1, sntest_part2) of a small 'model', as pip would lay them out."""
    site = tmp_path / "site"
    for i, data in enumerate(CHUNKS, 1):
        (site / f"sntest_part{i}" / "data").mkdir(parents=True)
        (site / f"sntest_part{i}" / "__init__.py").write_text("")
        (site / f"sntest_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(CHUNKS)
    p = Packaged("sntest", "sntest.gguf", "sntest_part", len(CHUNKS), len(whole), hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(weights.PACKAGED, "sntest", p)
    return p


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_assembly_is_verified_and_leaves_only_the_file_and_its_sidecar(packaged: Packaged, tmp_path: Path) -> None:
    out = assemble(packaged, tmp_path / "models")
    assert sha256(out) == packaged.sha256
    assert sorted(x.name for x in out.parent.iterdir()) == ["sntest.gguf", "sntest.verified.json"]  # no temp files
    assert json.loads(out.with_suffix(".verified.json").read_text())["sha256"] == packaged.sha256
    assert file_digest(out) == packaged.sha256[:16]


@pytest.mark.parametrize("sidecar", ['{"sha256": "1d96', b"\xff\xfe\x00garbage", "[]", ""])
def test_a_torn_or_unreadable_sidecar_is_re_verified_not_a_crash(packaged: Packaged, tmp_path: Path,
                                                                  sidecar: str | bytes) -> None:
    out = assemble(packaged, tmp_path / "models")
    inode = out.stat().st_ino
    path = out.with_suffix(".verified.json")
    path.write_bytes(sidecar if isinstance(sidecar, bytes) else sidecar.encode())
    assert file_digest(out) == packaged.sha256[:16]  # hashed again instead
    assert assemble(packaged, tmp_path / "models") == out and out.stat().st_ino == inode  # not even re-assembled
    assert json.loads(path.read_text())["sha256"] == packaged.sha256  # and the sidecar is whole again


def test_changed_bytes_with_the_same_size_and_mtime_are_not_trusted(packaged: Packaged, tmp_path: Path) -> None:
    out = assemble(packaged, tmp_path / "models")
    before = out.stat()
    time.sleep(0.02)  # kernels before 6.13 advance file times in clock ticks of a few milliseconds
    with open(out, "r+b") as f:  # a bit flipped in place: same size; the modification time is then set back
        f.seek(len(CHUNKS[0]) + 5)
        f.write(b"X")
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert file_digest(out) != packaged.sha256[:16]  # the completion cache does not take it for the packaged model
    assert assemble(packaged, tmp_path / "models") == out and sha256(out) == packaged.sha256  # assembled again
