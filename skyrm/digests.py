"""What identifies a file: one rule for every model file (judge GGUFs, reward-model checkpoints, encoders).

The rule is the SHA-256 of the whole file. Hashing a large file costs a read of it, so a
digest is memoised by (resolved path, size, mtime): in memory for the process, and on disk
in ``$SKYRM_CACHE/file-hashes.json`` for files over 64 MiB, so a multi-GiB GGUF is read once
per version of the file, not once per run. Deliberately not here: what a digest goes into
(cache keys, fingerprints of scorers and encoders: their modules say what else they hash),
identities of records (``records.content_hash``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from skyrm.shipped_models import cache_dir

DISK_MEMO_MIN_BYTES = 64 << 20  # only big files are worth a disk memo
_MEMO: dict[str, str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, memoised in memory and in the cache dir by (path, size, mtime)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key in _MEMO:
        return _MEMO[key]
    memo_path = cache_dir() / "file-hashes.json"
    disk: dict[str, str] = {}
    if stat.st_size > DISK_MEMO_MIN_BYTES and memo_path.exists():
        try:
            disk = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError):
            disk = {}
        if key in disk:
            _MEMO[key] = disk[key]
            return disk[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    _MEMO[key] = value
    if stat.st_size > DISK_MEMO_MIN_BYTES:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            disk[key] = value
            tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(disk))
            tmp.replace(memo_path)
        except OSError:
            pass
    return value


def file_fingerprint(path: Path) -> str:
    """A model file's identity as a judge shows it: name, size and the start of its digest."""
    return f"{path.name}:{path.stat().st_size}:{file_digest(path)[:16]}"
