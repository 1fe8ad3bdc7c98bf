"""Files a graph names: where they are, and their stamps for cache keys.

Two ideas live here and nowhere else:

* **Stamps.** A file's identity for a cache key is ``(real path, size, mtime_ns)``,
  so a file replaced under the same name gives a new key. A model *folder*'s stamp
  covers only the files a loader reads (``model_index.json`` and, one level down,
  configs, weights and tokenizer files), and a folder that is not a model is refused
  before anything walks it (``/usr`` is not fingerprinted file by file). A *dataset*
  folder (kind ``dataset``) is the exception: its stamp carries a digest of the names,
  sizes and mtimes of its images and caption files (:data:`DATASET_SUFFIXES`, top level
  only), so adding, removing, renaming or editing one gives a new key.
* **Resolution.** :class:`PathResolver` turns a name from a graph (``images/digit3.png``,
  ``my_lora.safetensors``) into a path: the graph file's own folder first, then the
  folders for that kind of file (``--models-dir``'s ``loras/``...), then the general
  search folders (the working directory, the server's ``inputs/``...), then the shipped
  example workflows. A *confined* resolver (the server's) accepts only paths inside its
  folders and says the same thing whether or not a file exists elsewhere.
* **Model folders.** :func:`kind_folders` turns model folders in ComfyUI's layout
  (``DIR/checkpoints``, ``DIR/loras``...) plus extra per-kind folders into the
  ``kinds`` a resolver searches; :func:`list_models` lists what they hold.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

Stamp = tuple[str, int, int]
"""(real path, total bytes, latest mtime in ns)."""

#: Files a model folder's loaders read, relative to the folder (globs, at most one level down).
MODEL_FILES = ("model_index.json", "config.json", "*.safetensors", "*/config.json", "*/*.json", "*/*.safetensors",
               "*/*.bin", "*/*.txt", "*/*.model")

#: Kinds of file a node input may name, with the folder name ComfyUI's ``models/`` layout
#: gives them and whether a folder (a diffusers model, a dataset) is acceptable.
KINDS: dict[str, tuple[str, bool]] = {
    "image": ("", False),
    "mask": ("", False),
    "checkpoint": ("checkpoints", True),
    "lora": ("loras", False),
    "embedding": ("embeddings", False),
    "vae": ("vae", True),
    "controlnet": ("controlnet", True),
    "upscale_model": ("upscale_models", False),
    "dataset": ("", True),
    "file": ("", False),
}


#: Suffixes of model weight files a listing shows (pickle formats load only with --allow-pickle).
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
#: Environment variable naming model folders in ComfyUI's layout (``os.pathsep``-separated).
MODELS_DIR_ENV = "NODEFLOW_MODELS_DIR"
#: Files that make up a training dataset folder (its top level): images, and captions beside them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_SUFFIX = ".txt"
DATASET_SUFFIXES = (*IMAGE_SUFFIXES, CAPTION_SUFFIX)


class NotAModel(ValueError):
    """A folder given as a model that holds no model (no ``model_index.json`` or ``config.json``)."""


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a diffusers model (pipeline or single component)."""
    return (folder / "model_index.json").is_file() or (folder / "config.json").is_file()


def stamp(path: str | Path, kind: str = "file") -> Stamp:
    """The stamp of a file, of a model folder's loader-read files, or of a dataset folder (see the module docstring).

    Raises ``FileNotFoundError`` for a missing path and :class:`NotAModel` for a folder
    that is not a model (unless ``kind`` is ``"dataset"``).
    """
    real = Path(os.path.realpath(Path(path).expanduser()))
    if real.is_file():
        st = real.stat()
        return str(real), st.st_size, st.st_mtime_ns
    if not real.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if kind == "dataset":
        return _dataset_stamp(real)
    if not is_model_folder(real):
        raise NotAModel(f"{path} is a folder but not a model (no model_index.json or config.json in it)")
    files = {p for pattern in MODEL_FILES for p in real.glob(pattern) if p.is_file()}
    stats = [p.stat() for p in files]
    return str(real), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def _dataset_stamp(folder: Path) -> Stamp:
    """A dataset folder's stamp: its path with a digest of its dataset files' names, sizes and mtimes."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DATASET_SUFFIXES and p.is_file())
    listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    digest = hashlib.blake2b(json.dumps(listing).encode(), digest_size=8).hexdigest()
    return f"{folder}#{digest}", sum(size for _, size, _ in listing), max((m for _, _, m in listing), default=0)


def stamp_text(path: str | Path, kind: str = "file") -> str:
    """:func:`stamp` as one string for a cache key."""
    real, size, mtime = stamp(path, kind)
    return f"{real}:{size}:{mtime}"


def glob_stamp(folder: Path, pattern: str) -> str:
    """A digest of the names, sizes and mtimes of ``folder``'s files matching ``pattern``.

    For nodes that reuse files they wrote earlier: deleting or editing one changes it.
    """
    listing = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob(pattern)) if folder.is_dir() else []
    digest = hashlib.blake2b(json.dumps(listing).encode(), digest_size=8).hexdigest()
    return f"{folder.resolve()}:{digest}"


@dataclass(frozen=True)
class PathResolver:
    """Finds the files a graph names (see the module docstring). Immutable: derive with :meth:`with_base`.

    ``base`` is the graph file's folder; ``kinds`` maps a kind (``"lora"``) to its
    folders; ``roots`` are searched for every kind; ``fallback`` (the shipped workflows)
    last. ``confined`` refuses anything outside ``base``/``kinds``/``roots``.
    """

    roots: tuple[Path, ...] = ()
    kinds: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    base: Path | None = None
    fallback: tuple[Path, ...] = ()
    confined: bool = False

    @classmethod
    def create(cls, roots: Iterable[str | Path] = (), *, kinds: Mapping[str, Sequence[str | Path]] | None = None,
               base: str | Path | None = None, fallback: Iterable[str | Path] = (), confined: bool = False) -> PathResolver:
        """Build one from plain paths."""
        return cls(
            roots=tuple(Path(r) for r in roots),
            kinds={k: tuple(Path(p) for p in v) for k, v in (kinds or {}).items()},
            base=Path(base) if base is not None else None,
            fallback=tuple(Path(f) for f in fallback),
            confined=confined,
        )

    def with_base(self, base: str | Path | None) -> PathResolver:
        """The same resolver searching ``base`` (a graph file's folder) first."""
        return replace(self, base=Path(base) if base is not None else None)

    def folders(self, kind: str) -> list[Path]:
        """Where a relative name of ``kind`` is looked up, in order."""
        found = [self.base] if self.base is not None else []
        return [*found, *self.kinds.get(kind, ()), *self.roots, *self.fallback]

    def resolve(self, name: str, kind: str = "file") -> Path:
        """The existing path ``name`` stands for; ``FileNotFoundError`` saying where it looked."""
        folder_ok = KINDS.get(kind, ("", False))[1]
        given = Path(name).expanduser()
        if self.confined:
            return self._resolve_confined(name, given, kind, folder_ok)
        candidates = [given] if given.is_absolute() else [root / given for root in self.folders(kind)]
        for candidate in candidates:
            if candidate.is_file() or (folder_ok and candidate.is_dir()):
                return candidate
        where = ", ".join(dict.fromkeys(str(c.parent) for c in candidates))
        raise FileNotFoundError(f"{_what(kind)} '{name}' not found (looked in {where})")

    def _resolve_confined(self, name: str, given: Path, kind: str, folder_ok: bool) -> Path:
        refused = self._refusal(name, kind)
        if not name or "\x00" in name or ".." in given.parts:
            raise refused
        # model folders are searched by relative name only; an absolute path may point into the
        # general folders (uploads come back as absolute paths, --allow-read folders take them)
        allowed = [f.resolve() for f in ((*self.roots, *self.fallback) if given.is_absolute() else self.folders(kind))]
        candidates = [given] if given.is_absolute() else [root / given for root in allowed]
        for candidate in candidates:
            real = candidate.resolve()
            if not any(real.is_relative_to(root) for root in allowed):
                continue  # a link or an absolute path leading out: never followed, never reported
            if real.is_file() or (folder_ok and real.is_dir()):
                return real
        raise refused

    def _refusal(self, name: str, kind: str) -> FileNotFoundError:
        """What a confined resolver says: the kind's folders by their layout name only, never a server path."""
        layout = KINDS.get(kind, ("", False))[0]
        where = f"its {layout}/ model folders, " if layout and self.kinds.get(kind) else ""
        return FileNotFoundError(f"{_what(kind)} '{name}' is not among this server's files ({where}its inputs folder and --allow-read folders)")

    def fingerprint(self, name: str | None, kind: str = "file") -> str:
        """The stamp of the file ``name`` resolves to, as cache-key text (``missing:...`` when absent)."""
        if name is None:
            return "linked"  # the name comes from another node, whose key already varies with it
        try:
            return stamp_text(self.resolve(name, kind), kind)
        except (OSError, ValueError):
            return f"missing:{name}"


def kind_folders(models_dirs: Iterable[str | Path] = (), extra: Mapping[str, Iterable[str | Path]] | None = None) -> dict[str, tuple[Path, ...]]:
    """The folders of each kind for a resolver: ``DIR/<layout name>`` of each model folder, then ``extra``'s.

    ``models_dirs`` are folders in ComfyUI's ``models/`` layout (:data:`KINDS` names the
    subfolders); ``extra`` adds folders per kind (from ComfyUI's ``extra_model_paths.yaml``).
    Folders are kept whether or not they exist yet (a model copied in later is found).
    """
    found: dict[str, list[Path]] = {}
    for root in models_dirs:
        for kind, (sub, _) in KINDS.items():
            if sub:
                found.setdefault(kind, []).append(Path(root).expanduser() / sub)
    for kind, folders in (extra or {}).items():
        if kind not in KINDS:
            raise ValueError(f"unknown kind of model folder {kind!r} (kinds: {', '.join(k for k, v in KINDS.items() if v[0])})")
        found.setdefault(kind, []).extend(Path(f).expanduser() for f in folders)
    return {kind: tuple(dict.fromkeys(folders)) for kind, folders in found.items()}


@dataclass(frozen=True)
class ModelEntry:
    """One model a listing found: its name (relative to its kind's folder, ``/``-separated), path and size."""

    kind: str
    name: str
    path: Path
    size: int


def list_models(kinds: Mapping[str, Sequence[Path]], max_depth: int = 4) -> list[ModelEntry]:
    """Every model file (and diffusers folder, for kinds that take one) in ``kinds``' folders, by kind and name.

    A name found in two folders is listed once, from the first (the one a resolver picks).
    Hidden entries are skipped; symbolic links leading out of a folder are not followed.
    """
    entries: list[ModelEntry] = []
    for kind, folders in kinds.items():
        seen: set[str] = set()
        for folder in folders:
            for name, path in _walk_models(Path(folder), KINDS.get(kind, ("", False))[1], max_depth):
                if name not in seen:
                    seen.add(name)
                    entries.append(ModelEntry(kind, name, path, _size(path)))
    return entries


def _walk_models(root: Path, folders_ok: bool, max_depth: int) -> list[tuple[str, Path]]:
    """(name, path) of the models under ``root``, iteratively, at most ``max_depth`` levels down."""
    if not root.is_dir():
        return []
    real_root = root.resolve()
    found: list[tuple[str, Path]] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if child.name.startswith(".") or not child.resolve().is_relative_to(real_root):
                continue
            if child.is_dir():
                if folders_ok and is_model_folder(child):
                    found.append((child.relative_to(root).as_posix(), child))
                elif depth + 1 < max_depth:
                    stack.append((child, depth + 1))
            elif child.suffix.lower() in MODEL_SUFFIXES:
                found.append((child.relative_to(root).as_posix(), child))
    return sorted(found)


def _size(path: Path) -> int:
    try:
        return stamp(path)[1]
    except (OSError, ValueError):
        return 0


def _what(kind: str) -> str:
    return {"checkpoint": "model", "lora": "LoRA file", "embedding": "embedding file", "controlnet": "ControlNet",
            "upscale_model": "upscale model", "vae": "VAE"}.get(kind, kind)


__all__ = [
    "CAPTION_SUFFIX", "DATASET_SUFFIXES", "IMAGE_SUFFIXES", "KINDS", "MODELS_DIR_ENV", "MODEL_FILES", "MODEL_SUFFIXES", "ModelEntry",
    "NotAModel", "PathResolver", "Stamp", "glob_stamp", "is_model_folder", "kind_folders", "list_models", "stamp", "stamp_text",
]
