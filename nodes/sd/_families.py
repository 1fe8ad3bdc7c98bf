"""Model families on the graph: which model a UNet or a conditioning comes from, and refusing mixes.

Two checks, one before anything loads and one when the values meet:

* :func:`mismatch_problems` (validation): walks up the graph from a sampler's ``unet``
  and ``positive``/``negative`` inputs to the Load Model nodes behind them, tells each
  model's family from its path without loading weights
  (:func:`nodeflow.models.families.probe_family`), and reports a conditioning made by
  another family's text encoder than the UNet's, naming both.
* :func:`check_conditioning` (run time, for graphs whose paths are linked or built by
  hand): a conditioning's entries against the UNet they meet: SDXL's added inputs
  (pooled text, time ids), the text-embedding width, the number of time ids (SDXL
  base: sizes; refiner: aesthetic score). The error names both families.

Private to the pack.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.models.families import ModelFamily, probe_family
from nodeflow.node import ValidationContext
from nodeflow.values import Conditioning

#: The node whose ``model`` literal names a model file or folder.
LOADER = "sd.load_model"
#: Sockets a conditioning's family travels through, upstream of a sampler.
TEXT_PATH = frozenset({"CONDITIONING", "TEXT_ENCODER", "CLIP", "TOKENS"})
UNET_PATH = frozenset({"UNET"})


# ---------------------------------------------------------------------------------- validation
def loader_family(loader: ValidationContext) -> ModelFamily | None:
    """The family of the model a Load Model node names, when its path can be told now."""
    model = loader.literals.get("model")
    if not isinstance(model, str) or not model:
        return None
    if model == "default":
        return ModelFamily.SD1
    try:
        return probe_family(loader.paths.resolve(model, "checkpoint") if loader.paths is not None else model)
    except (OSError, ValueError):
        return None  # a missing file is reported on the loader itself


def loaders_above(check: ValidationContext, name: str, through: Iterable[str]) -> list[ValidationContext]:
    """The Load Model nodes reached upstream of input ``name`` along sockets in ``through``."""
    allowed = frozenset(through)
    found: list[ValidationContext] = []
    seen: set[str] = set()
    stack = [check.source(name)]
    while stack:
        here = stack.pop()
        if here is None or here.node_id in seen:
            continue
        seen.add(here.node_id)
        if here.node_type == LOADER:
            found.append(here)
            continue
        stack.extend(here.source(link) for link, kind in here.links.items() if kind in allowed)
    return found


def families_above(check: ValidationContext, name: str, through: Iterable[str]) -> dict[str, ModelFamily]:
    """Load Model node id -> family, for every loader reached upstream of input ``name`` along sockets in ``through``."""
    families = {loader.node_id: loader_family(loader) for loader in loaders_above(check, name, through)}
    return {node_id: family for node_id, family in families.items() if family is not None}


def loader_path(loader: ValidationContext) -> Path | None:
    """The model file or folder a Load Model node names, when it can be told now."""
    model = loader.literals.get("model")
    if not isinstance(model, str) or not model:
        return None
    if model == "default":
        from nodeflow.resources import DEFAULT_MODEL_DIR

        return Path(DEFAULT_MODEL_DIR)
    try:
        return loader.paths.resolve(model, "checkpoint") if loader.paths is not None else Path(model)
    except (OSError, ValueError):
        return None


def mismatch_problems(check: ValidationContext, sides: Iterable[str] = ("positive", "negative")) -> list[ErrorInfo]:
    """A sampler's conditioning made by another model family than its UNet's, one error per side and loader."""
    unets = families_above(check, "unet", UNET_PATH)
    if len(set(unets.values())) != 1:
        return []  # unknown (a linked path) or ambiguous: the run-time check speaks then
    (unet_loader, unet_family), *_ = unets.items()
    problems = []
    for side in sides:
        for loader, family in families_above(check, side, TEXT_PATH).items():
            if family is not unet_family:
                problems.append(ErrorInfo(
                    "family_mismatch",
                    f"the {side} conditioning is encoded by an {family.label} model (node '{loader}') and the UNet is an "
                    f"{unet_family.label} model's (node '{unet_loader}'): encode the prompt with the UNet's own model",
                    input=side))
    return problems


def clip_problems(check: ValidationContext, wanted: tuple[ModelFamily, ...], node: str) -> list[ErrorInfo]:
    """A ``clip`` input fed by a model of none of the ``wanted`` families."""
    problems = []
    for loader, family in families_above(check, "clip", TEXT_PATH).items():
        if family not in wanted:
            problems.append(ErrorInfo("family_mismatch", f"{node} encodes prompts for {' or '.join(f.label for f in wanted)} models;"
                                      f" node '{loader}' loads an {family.label} model (use Tokenize + Text Encode for it)",
                                      input="clip"))
    return problems


# ---------------------------------------------------------------------------------- run time
def unet_label(unet: Any) -> str:
    """A human name for the family a UNet belongs to, told from its config."""
    config = unet.config
    if getattr(config, "addition_embed_type", None) == "text_time":
        return "SDXL"
    return ModelFamily.SD2.label if getattr(config, "use_linear_projection", False) else ModelFamily.SD1.label


def conditioning_label(entry: Conditioning) -> str:
    """A human name for the family whose text encoder made ``entry``."""
    if entry.family:
        try:
            return ModelFamily(entry.family).label
        except ValueError:
            return entry.family
    return "SDXL" if "text_embeds" in entry.added else "SD 1.x/2.x (Text Encode)"


def check_conditioning(unet: Any, conditioning: Conditioning, side: str) -> None:
    """Raise a clear error when ``conditioning`` was not made for ``unet``'s family (see the module docstring)."""
    for entry in conditioning.entries:
        problem = _entry_problem(unet, entry)
        if problem:
            raise ValueError(f"{side}: the conditioning is an {conditioning_label(entry)} model's and the UNet an "
                             f"{unet_label(unet)} model's: {problem}")


def _entry_problem(unet: Any, entry: Conditioning) -> str | None:
    config = unet.config
    takes_added = getattr(config, "addition_embed_type", None) == "text_time"
    has_added = "text_embeds" in entry.added and "time_ids" in entry.added
    if takes_added and not has_added:
        return "SDXL UNets need the pooled text embedding and size conditioning SDXL Text Encode gives"
    if not takes_added and "text_embeds" in entry.added:
        return "this UNet takes no pooled text embedding or time ids; encode with Tokenize + Text Encode of its own model"
    width = getattr(config, "cross_attention_dim", None)
    if isinstance(width, int) and entry.embeddings.shape[-1] != width:
        return f"its text embeddings are {entry.embeddings.shape[-1]} wide, the UNet attends to {width}-wide ones"
    if takes_added:
        return _time_ids_problem(unet, entry)
    return None


def _time_ids_problem(unet: Any, entry: Conditioning) -> str | None:
    expected = int(unet.add_embedding.linear_1.in_features)
    step = int(unet.config.addition_time_embed_dim)
    ids = int(entry.added["time_ids"].shape[-1])
    passed = int(entry.added["text_embeds"].shape[-1]) + ids * step
    if passed == expected:
        return None
    wanted = (expected - int(entry.added["text_embeds"].shape[-1])) / step
    if ids == 6 and wanted == 5:
        return "the UNet is a refiner's (5 time ids: sizes and an aesthetic score), the conditioning has base SDXL's 6"
    if ids == 5 and wanted == 6:
        return "the UNet is base SDXL's (6 time ids: original size, crop, target size), the conditioning has a refiner's 5"
    return f"the UNet's added embedding takes {expected} numbers, the conditioning gives {passed}"
