"""A run's resource budget: pixels x batch, and an estimated peak memory, checked before anything runs.

Each input has its own range, yet the ranges do not bound a run: width and height up to
8192 are each fine, while 8192 x 8192 takes one UNet step past many gigabytes. A
:class:`Budget` bounds the product. It is checked with validation (:func:`nodeflow.validate.check`
with ``budget=``), so a run over it is refused before any node runs or any model loads.

Nodes tell the budget what they make through two optional methods (a small protocol
beside ``validate_inputs``; neither is required and the server names no node type):

* ``output_pixels(self, check: BudgetCheck, **literals) -> Pixels | None``: the size of
  the picture (latents count in pixels) the node outputs, from its literals and
  ``check.pixels(name)``, what flows into its input ``name`` when that is known. ``None``
  (or no method): the largest size among its linked inputs passes on unchanged (Denoise,
  VAE Decode, Save Image keep their input's size).
* ``model_facts(self, check: BudgetCheck, **literals) -> ModelFacts | None``: what a loader
  knows of its model before loading it (parameter count, UNet and VAE widths, precision),
  read from config files and weight-file headers. Facts flow downstream along links.

Walking the graph in dependency order, each size is checked where it was made (its node
and the inputs that set it, ``Pixels.fields``): pixels x batch over ``max_pixels``, or,
once the model is known, an estimated peak memory over ``max_memory``, gives one
``over_budget`` error naming that node and field.

The peak-memory figure is an estimate (:func:`estimate_peak_bytes`), not a measurement:
weights, plus the larger of the UNet's and the VAE decoder's activations at full
resolution, with per-cell multipliers read off the SD architecture (see the constants).
Attention matrices are assumed not to be materialised (PyTorch's fused attention); a
backend that materialises them needs much more at large sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ErrorInfo

#: Default ``max_pixels``: 16 Mi pixels x batch per node (4096 x 4096, or 2048 x 2048 x 4;
#: 1024 x 1024 x 4 is a quarter of it; 8192 x 8192 is four times over).
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Live activation tensors of ``unet_channels`` per latent cell at the UNet's top level, per
#: image of the batch-2 (uncond + cond) call: 3 kept skip connections, the feed-forward's
#: GEGLU (8 C projection, 4 C gate, 4 C product), the attention's q, k, v and output (4 C)
#: and the residual stream (about 1 C). An estimate from the architecture, not a measurement.
UNET_LIVE = 24
#: Live tensors of ``vae_channels`` per pixel in the VAE decoder's top level: the upsampled
#: input at twice the width, its normalised and activated copies, the convolution's output.
VAE_LIVE = 8
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class Pixels:
    """A size a node makes: ``width`` x ``height`` pixels, ``batch`` images; ``fields`` are the inputs that set it."""

    width: int
    height: int
    batch: int = 1
    fields: tuple[str, ...] = ()
    node: str | None = None

    @property
    def total(self) -> int:
        """Pixels times batch."""
        return self.width * self.height * self.batch

    def scaled(self, factor: float, fields: tuple[str, ...]) -> Pixels:
        """This size times ``factor`` per side, set by ``fields``."""
        return Pixels(max(1, round(self.width * factor)), max(1, round(self.height * factor)), self.batch, fields)

    def describe(self) -> str:
        """``W x H x B = N pixels`` for messages."""
        return f"{self.width} x {self.height} x {self.batch} = {self.total:,} pixels"


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model before it loads (see :func:`estimate_peak_bytes`)."""

    parameters: int
    unet_channels: int
    vae_channels: int
    vae_factor: int = 8
    dtype: str = "auto"
    name: str = "the model"


@dataclass(frozen=True)
class Budget:
    """Limits on one run: ``max_pixels`` per node (pixels x batch; ``None``: no limit) and
    ``max_memory`` bytes of estimated peak memory (``None``: not checked). ``auto_dtype``
    is what a loader's ``auto`` precision means here (the model store's default)."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_memory: int | None = None
    auto_dtype: str = "fp32"


def element_bytes(dtype: str, auto_dtype: str = "fp32") -> int:
    """Bytes per tensor element for a precision name (``auto`` resolves to ``auto_dtype``)."""
    return ELEMENT_BYTES.get(auto_dtype if dtype == "auto" else dtype, 4)


def estimate_peak_bytes(facts: ModelFacts, size: Pixels, auto_dtype: str = "fp32") -> int:
    """Estimated peak memory of denoising and decoding ``size`` with the model ``facts`` describe.

    ``e`` bytes per element, ``B`` batch, ``H x W`` pixels, ``f`` the VAE factor::

        weights + max(2 * B * (H*W / f^2) * unet_channels * e * UNET_LIVE,
                      B * H * W * vae_channels * e * VAE_LIVE)

    An estimate from the architecture (see the module docstring), good to a factor of
    about two; it ignores the allocator's slack and materialised attention matrices.
    """
    e = element_bytes(facts.dtype, auto_dtype)
    cells = size.total / (facts.vae_factor * facts.vae_factor)
    unet = 2 * cells * facts.unet_channels * e * UNET_LIVE
    vae = size.total * facts.vae_channels * e * VAE_LIVE
    return int(facts.parameters * e + max(unet, vae))


@dataclass(frozen=True)
class BudgetCheck:
    """What a node's ``output_pixels`` / ``model_facts`` may ask: sizes and literals upstream, and the path resolver."""

    node_id: str
    pixels_of: Callable[[str], Pixels | None]
    upstream_literals: Callable[[str], dict[str, Any] | None]
    paths: Any = None

    def pixels(self, name: str) -> Pixels | None:
        """The size flowing into input ``name`` (``None``: not linked, or not known before running)."""
        return self.pixels_of(name)

    def upstream(self, name: str) -> dict[str, Any] | None:
        """The literal inputs of the node feeding input ``name`` (``None`` if it is not linked)."""
        return self.upstream_literals(name)


def gib(n: float) -> str:
    """Bytes as GiB, for messages."""
    return f"{n / 2**30:.1f} GiB"


def over_budget(size: Pixels, budget: Budget, facts: ModelFacts | None) -> str | None:
    """Why ``size`` is over ``budget`` (a sentence), or ``None`` when it fits."""
    fields = " or ".join(f"'{f}'" for f in size.fields) or "the size"
    if budget.max_pixels is not None and size.total > budget.max_pixels:
        return (f"{size.describe()} is over the budget of {budget.max_pixels:,} pixels x batch per node"
                f" (max_pixels); lower {fields}")
    if budget.max_memory is not None and facts is not None:
        peak = estimate_peak_bytes(facts, size, budget.auto_dtype)
        if peak > budget.max_memory:
            return (f"{size.describe()} with {facts.name} ({element_bytes(facts.dtype, budget.auto_dtype) * 8}-bit) needs an"
                    f" estimated {gib(peak)} at its peak, over the budget of {gib(budget.max_memory)} (max_memory); lower {fields}")
    return None


def with_origin(size: Pixels | None, node_id: str) -> Pixels | None:
    """``size`` stamped with the node that made it (unless it already names one)."""
    return None if size is None or size.node is not None else replace(size, node=node_id)


@dataclass
class _Walk:
    """What the walk knows so far: each node's output size and model facts."""

    literals: dict[str, dict[str, Any]]
    links: dict[str, dict[str, tuple[str, str, str, str]]]
    paths: Any
    sizes: dict[str, Pixels] = field(default_factory=dict)
    facts: dict[str, ModelFacts] = field(default_factory=dict)

    def context(self, node_id: str) -> BudgetCheck:
        links = self.links.get(node_id, {})

        def pixels(name: str) -> Pixels | None:
            link = links.get(name)
            return self.sizes.get(link[0]) if link is not None else None

        def upstream(name: str) -> dict[str, Any] | None:
            link = links.get(name)
            return dict(self.literals.get(link[0], {})) if link is not None else None

        return BudgetCheck(node_id, pixels, upstream, self.paths)

    def inherited(self, node_id: str) -> tuple[Pixels | None, ModelFacts | None]:
        """The largest size and the first model facts among ``node_id``'s linked inputs."""
        sources = [link[0] for link in self.links.get(node_id, {}).values()]
        sizes = [self.sizes[s] for s in sources if s in self.sizes]
        facts = next((self.facts[s] for s in sources if s in self.facts), None)
        return (max(sizes, key=lambda p: p.total) if sizes else None), facts


def budget_errors(order: list[str], classes: dict[str, Any], literals: dict[str, dict[str, Any]],
                  links: dict[str, dict[str, tuple[str, str, str, str]]], budget: Budget, paths: Any = None) -> list[ErrorInfo]:
    """Every ``over_budget`` problem of a valid graph, walking ``order`` (dependencies first); see the module docstring."""
    walk = _Walk(literals, links, paths)
    told: set[str] = set()
    errors: list[ErrorInfo] = []
    for node_id in order:
        size, facts = walk.inherited(node_id)
        made = _ask(classes.get(node_id), "output_pixels", walk.context(node_id), literals.get(node_id, {}))
        own = _ask(classes.get(node_id), "model_facts", walk.context(node_id), literals.get(node_id, {}))
        size = with_origin(made, node_id) if isinstance(made, Pixels) else size
        facts = own if isinstance(own, ModelFacts) else facts
        if size is not None:
            walk.sizes[node_id] = size
        if facts is not None:
            walk.facts[node_id] = facts
        if size is None or size.node in told:
            continue
        problem = over_budget(size, budget, facts)
        if problem is not None:
            told.add(size.node or node_id)
            errors.append(ErrorInfo("over_budget", problem, size.node, size.fields[0] if size.fields else None))
    return errors


def _ask(cls: Any, method: str, check: BudgetCheck, literals: dict[str, Any]) -> Any:
    """Call a node's budget method; a broken one tells nothing (validation already ran its own hook)."""
    hook = getattr(cls, method, None) if cls is not None else None
    if hook is None:
        return None
    try:
        return hook(cls(), check, **literals)
    except Exception:  # noqa: BLE001 - a node's estimate must never make a valid graph fail
        return None


__all__ = [
    "Budget", "BudgetCheck", "DEFAULT_MAX_PIXELS", "ModelFacts", "Pixels", "element_bytes", "budget_errors", "estimate_peak_bytes", "over_budget",
]
