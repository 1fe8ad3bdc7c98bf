"""Signature-keyed output cache: an in-memory LRU with a byte budget, and a disk tier.

Keys are node signatures computed by the planner (type, version, literals, the parents'
keys, a fingerprint); this module only stores and evicts. An entry is the dict of a
node's outputs plus the files it reported. Model components are not counted: the model
store owns them and cache entries only point at them.

The optional disk tier writes each entry whose values are tensors, primitives or
:mod:`nodeflow.values` classes as one safetensors file (metadata in its header),
with a small ``index.json`` beside them, so a later process reuses intermediates.
Entries that hold live objects (models, tokenizers) stay in memory only.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from .codec import NotSerializable, decode_value, encode_value, value_nbytes


@dataclass
class CacheEntry:
    """A node's outputs (``values``) and the files it wrote (``files``)."""

    values: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)
    nbytes: int = 0


def default_budget() -> int:
    """A quarter of the RAM available now, at least 512 MiB."""
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pages = 8 << 30
    return max(512 << 20, pages // 4)


class Cache:
    """LRU over :class:`CacheEntry` values with a byte budget; optional disk tier. Thread-safe."""

    def __init__(self, budget_bytes: int | None = None, disk_dir: str | Path | None = None):
        self.budget_bytes = default_budget() if budget_bytes is None else budget_bytes
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` (memory first, then disk), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
        entry = self._read_disk(key)
        if entry is None:
            self.misses += 1
            return None
        self.disk_hits += 1
        self._put_memory(key, entry)
        return entry

    def put(self, key: str, values: dict[str, Any], files: list[dict[str, Any]] | None = None, label: str = "") -> None:
        """Store a node's outputs; also on disk when a disk tier is set and they are serialisable."""
        entry = CacheEntry(values, list(files or []), value_nbytes(values))
        self._put_memory(key, entry)
        if self.disk_dir is not None:
            self._write_disk(key, entry, label)

    def _put_memory(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if entry.nbytes > self.budget_bytes:
                return  # larger than the whole budget: keep it out rather than flush everything
            self._entries[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.budget_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Drop every in-memory entry (the disk tier is left alone)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict[str, Any]:
        """Entry count, bytes used, budget and hit counters."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "budget_bytes": self.budget_bytes,
                "hits": self.hits,
                "disk_hits": self.disk_hits,
                "misses": self.misses,
                "disk_dir": str(self.disk_dir) if self.disk_dir else None,
            }

    # -- disk tier ----------------------------------------------------------
    def _write_disk(self, key: str, entry: CacheEntry, label: str) -> None:
        assert self.disk_dir is not None
        tensors: dict[str, Any] = {}
        try:
            meta = encode_value(entry.values, tensors)
        except NotSerializable:
            return
        header = {"nodeflow": json.dumps({"values": meta, "files": entry.files})}
        path = self.disk_dir / f"{key}.safetensors"
        fd, tmp = tempfile.mkstemp(dir=self.disk_dir, suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)  # atomic: a reader in another process never sees half a file
        self._update_index(key, {"node": label, "bytes": path.stat().st_size, "created": time.time()})

    def _read_disk(self, key: str) -> CacheEntry | None:
        if self.disk_dir is None:
            return None
        path = self.disk_dir / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                header = json.loads((f.metadata() or {})["nodeflow"])
            tensors = load_file(str(path))
            values = decode_value(header["values"], tensors)
        except Exception:  # a corrupt or foreign file is a miss, not a crash
            return None
        return CacheEntry(values, header.get("files", []), value_nbytes(values))

    def _update_index(self, key: str, info: dict[str, Any]) -> None:
        assert self.disk_dir is not None
        index_path = self.disk_dir / "index.json"
        with self._lock:
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                index = {}
            index[key] = info
            tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            os.replace(tmp, index_path)
