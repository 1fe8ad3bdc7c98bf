"""The Python values that travel on sockets: tensors with the metadata that gives them meaning.

A latents value knows the VAE scaling it carries, an image knows its range and
layout. Each class names its socket type in ``__socket_type__`` (so ``Input(Latents)``
works). Values are shared through the cache, so nodes never mutate them: they are
frozen dataclasses, and the executor checks tensors' version counters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from . import types as t


@dataclass(frozen=True)
class Tokens:
    """Token ids for a batch of prompts: ``ids`` [B, L] long, ``attention_mask`` [B, L].

    ``L`` is ``chunks`` times the tokenizer's length (77): a long prompt is cut into
    chunks of 75 tokens, each wrapped in start/end tokens and padded, laid side by side.
    ``truncated`` holds, per prompt, the text that did not fit (empty when none).

    The prompt syntax adds (all ``None`` for a plain prompt):

    * ``weights`` [B, L] float32: each token's emphasis (``(word:1.3)``); ``None`` when all are 1.0;
    * ``empty`` [1, L / chunks] long: the empty prompt's ids, whose encoding weights pull towards;
    * ``vectors`` [E, D] float32: embedding vectors the prompt inserts (``embedding:name``);
      an id ``-1 - e`` stands for row ``e``, so these ids are not vocabulary ids.
    """

    __socket_type__: ClassVar[str] = t.TOKENS

    ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: tuple[str, ...] = ()
    chunks: int = 1
    weights: torch.Tensor | None = None
    empty: torch.Tensor | None = None
    vectors: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class ControlApplication:
    """One ControlNet applied to a conditioning entry (the Apply ControlNet node makes these).

    ``image`` is the control image, float [0, 1], [1 or B, 3, H, W] on the CPU;
    ``scale`` multiplies the ControlNet's residuals; it acts on the steps whose
    fraction of the schedule lies in [``start``, ``end``] (diffusers'
    ``control_guidance_start``/``control_guidance_end``). Compared by identity: the same
    application attached to the positive and the negative side runs once on both.
    """

    controlnet: Any
    image: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on: one entry, or several whose predictions are averaged.

    An entry is text ``embeddings`` [B, 77 * n, D] that the UNet cross-attends to (n
    chunks; see :func:`match_lengths`), plus:

    * ``added``: further per-row UNet inputs, passed as ``added_cond_kwargs`` (SDXL:
      ``text_embeds`` [B, 1280] and ``time_ids`` [B, 6]); each tensor has one row per
      prompt and is spread over the batch and concatenated ``[uncond, cond]`` exactly
      like the embeddings;
    * ``area``: ``(x, y, width, height)`` in pixels: the entry only predicts the noise
      of that rectangle (ComfyUI's ConditioningSetArea), with its edges feathered;
    * ``mask``: float [1 or B, 1, H, W]: the entry's weight per pixel (ConditioningSetMask);
    * ``strength``: the entry's weight against the others;
    * ``controls``: ControlNets applied to this entry, in order (their residuals add up);
    * ``family``: the model family whose text encoder(s) made it (a
      :class:`~nodeflow.models.families.ModelFamily` value such as ``"sdxl"``; ``""``
      when not known), so a sampler can name both families when it meets another's UNet.

    ``combined`` holds further entries (ConditioningCombine): the noise prediction of a
    side is the per-pixel weighted mean of its entries' predictions, weights
    ``mask * strength`` (see :mod:`nodeflow_nodes.sd._sampling`). A single entry without
    area or mask is the plain case: one batch-2 UNet call, as diffusers makes it.
    """

    __socket_type__: ClassVar[str] = t.CONDITIONING

    embeddings: torch.Tensor
    added: Mapping[str, torch.Tensor] = field(default_factory=dict)
    area: tuple[int, int, int, int] | None = None
    mask: torch.Tensor | None = None
    strength: float = 1.0
    controls: tuple[ControlApplication, ...] = ()
    combined: tuple[Conditioning, ...] = ()
    family: str = ""

    @property
    def entries(self) -> tuple[Conditioning, ...]:
        """Every entry, this one first, each without ``combined``."""
        head = replace(self, combined=()) if self.combined else self
        return (head, *(e for c in self.combined for e in c.entries))

    def combine(self, other: Conditioning) -> Conditioning:
        """Both values' entries in one conditioning (ComfyUI's ConditioningCombine)."""
        return replace(self, combined=(*self.combined, *other.entries))

    def map_entries(self, change: Any) -> Conditioning:
        """A conditioning whose every entry is ``change(entry)`` (a function of one entry)."""
        first, *rest = [change(e) for e in self.entries]
        return replace(first, combined=tuple(rest))


@dataclass(frozen=True)
class NoiseMask:
    """Where inpainting may change latents, and what to keep elsewhere (for 4-channel UNets).

    ``mask`` is [1 or B, 1, h, w] at latent resolution, 1 = repaint. ``original`` holds
    the clean latents kept outside the mask; ``noise`` is the noise Img2Img Init added
    (set by it), used to re-noise ``original`` to each next timestep before blending, as
    ``StableDiffusionInpaintPipeline`` does.
    """

    mask: torch.Tensor
    original: torch.Tensor
    noise: torch.Tensor | None = None


@dataclass(frozen=True)
class Latents:
    """Latents [B, C, h, w] in the UNet's space.

    ``scaling_factor`` is the VAE factor these latents were multiplied by (decoding
    divides by it).

    ``generator_state`` is the random stream that produced these latents: the
    ``get_state()`` of the CPU ``torch.Generator`` after their last draw, or ``None``.
    Stochastic samplers continue it, so a graph draws its numbers in the same order
    as diffusers' pipelines do with one generator (initial noise first, then step noise).
    A 2-D state [B, n] is one stream per image (per-image seeds), as diffusers' lists
    of generators.

    ``vae_factor`` is the VAE's pixels per latent cell along a side (8 for SD; areas and
    sizes given in pixels are converted with it). ``noise_mask`` (inpainting with an
    ordinary UNet) keeps the unmasked area after every step; ``concat`` [1 or B, k, h, w]
    are extra UNet input channels (an inpainting UNet's mask and masked-image latents),
    concatenated to the latents when the UNet takes them. Samplers carry both along.
    """

    __socket_type__: ClassVar[str] = t.LATENTS

    samples: torch.Tensor
    scaling_factor: float = 1.0
    generator_state: torch.Tensor | None = None
    vae_factor: int = 8
    noise_mask: NoiseMask | None = None
    concat: torch.Tensor | None = None


@dataclass(frozen=True)
class Image:
    """Images as float32 in [0, 1], layout [B, 3, H, W], on the CPU."""

    __socket_type__: ClassVar[str] = t.IMAGE

    pixels: torch.Tensor


@dataclass(frozen=True)
class Mask:
    """Masks as float32 in [0, 1], layout [B, 1, H, W]; 1 marks the area to change."""

    __socket_type__: ClassVar[str] = t.MASK

    mask: torch.Tensor


@dataclass(frozen=True)
class NoisePred:
    """A UNet noise prediction [B, C, h, w].

    ``uncond`` is set when the prediction came from a batch-2 classifier-free call and
    still needs guidance; a guided prediction has ``uncond=None``.
    """

    __socket_type__: ClassVar[str] = t.NOISE_PRED

    cond: torch.Tensor
    uncond: torch.Tensor | None = None


@dataclass(frozen=True)
class SchedulerState:
    """A diffusers scheduler part-way through a run: the SCHEDULER value.

    ``scheduler`` has had ``set_timesteps(steps)`` called and carries the multistep
    history (PNDM's ``ets``, DPM-Solver's ``model_outputs``...) of the steps taken so
    far. It is never mutated once in a state: a step works on a deep copy and returns
    a new state, so a cached state can feed any number of branches. ``index`` is the
    position in ``scheduler.timesteps`` of the next step; ``eta`` is DDIM's eta;
    ``start`` the index this run began at (img2img skips the first timesteps), so
    fractions of the schedule (a ControlNet's start/end) count from there. ``end``, when
    set, is the index the run stops before (SDXL's ``denoising_end``: the base model
    leaves the last timesteps to the refiner).
    """

    __socket_type__: ClassVar[str] = t.SCHEDULER

    scheduler: Any
    index: int = 0
    steps: int = 0
    name: str = ""
    eta: float = 0.0
    start: int = 0
    end: int | None = None

    @property
    def timesteps(self) -> torch.Tensor:
        """All timesteps of the run (the steps already taken included)."""
        return self.scheduler.timesteps  # type: ignore[no-any-return]

    @property
    def stop(self) -> int:
        """The index the run stops before: ``end``, else the number of timesteps."""
        total = len(self.scheduler.timesteps)
        return total if self.end is None else min(self.end, total)

    @property
    def remaining(self) -> int:
        """How many steps are left."""
        return self.stop - self.index


@dataclass(frozen=True)
class Embedding:
    """A textual-inversion embedding: ``vectors`` [n, D] bound to ``token``."""

    __socket_type__: ClassVar[str] = t.EMBEDDING

    token: str
    vectors: torch.Tensor


@dataclass(frozen=True)
class TextEncoders:
    """A model's tokenizers and text encoders with its family: the CLIP value (Load Model's ``clip``).

    SD 1.x/2.x fill ``tokenizer``/``text_encoder``; SDXL base adds ``tokenizer_2``/
    ``text_encoder_2`` (OpenCLIP-bigG with its projection, which gives the pooled
    embedding); the SDXL refiner has only the second pair. ``pipeline_config`` holds what
    diffusers' pipeline reads from the model folder (SDXL: ``force_zeros_for_empty_prompt``,
    ``requires_aesthetics_score``). Modules belong to the model store: never changed.
    """

    __socket_type__: ClassVar[str] = t.CLIP

    family: str
    tokenizer: Any = None
    text_encoder: Any = None
    tokenizer_2: Any = None
    text_encoder_2: Any = None
    pipeline_config: Mapping[str, Any] = field(default_factory=dict)


def match_lengths(*embeddings: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Text embeddings [B, L_i, D] brought to one sequence length, for one batched UNet call.

    A prompt of n chunks encodes to 77 * n positions, so a positive and a negative
    prompt may differ in length while ``cat([uncond, cond])`` needs them equal. As
    ComfyUI does (``comfy/conds.py``, ``CONDCrossAttn.concat``), each is repeated along
    the sequence up to the least common multiple of the lengths: cross-attention over
    a sequence repeated k times is the same attention (every key's softmax share is
    split k ways, the weighted sum unchanged), so the padding does not change what a
    prompt means. Tensors of equal length come back as they are (the very objects).
    """
    lengths = {e.shape[1] for e in embeddings}
    if len(lengths) <= 1:
        return tuple(embeddings)
    common = math.lcm(*lengths)
    return tuple(e if e.shape[1] == common else e.repeat(1, common // e.shape[1], 1) for e in embeddings)


@dataclass(frozen=True)
class LoraLayer:
    """One layer's low-rank factors: ``down`` [rank, in, *kernel], ``up`` [out, rank, *1]."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        """The inner dimension of ``up @ down``."""
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """``alpha / rank``: kohya's normalisation (1 when the file stores no alpha)."""
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def delta(self, shape: torch.Size, device: torch.device | str = "cpu") -> torch.Tensor:
        """``up @ down`` in float32, reshaped to the target weight's ``shape`` (scale not applied)."""
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        return (up @ down).reshape(shape)


@dataclass(frozen=True)
class Lora:
    """LoRA weights (the LORA value): layers by module name for each component.

    Names are dotted module paths (peft) or underscore-joined ones (kohya); both resolve
    against the model's own module names when merged (:func:`nodeflow.models.lora.merge_lora`).
    ``text_encoder_2`` is SDXL's second (OpenCLIP-bigG) text encoder. ``source`` names
    where the weights came from (a file, a training node), for messages.
    """

    __socket_type__: ClassVar[str] = t.LORA

    unet: dict[str, LoraLayer] = field(default_factory=dict)
    text_encoder: dict[str, LoraLayer] = field(default_factory=dict)
    source: str = ""
    text_encoder_2: dict[str, LoraLayer] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """Training images and their captions (the DATASET value).

    ``images`` are uint8 [3, H, W] tensors as read (any size; trainers crop and resize
    them, see :func:`nodeflow.training.dataset.pixels`); ``captions`` hold one caption
    per image, where several lines are alternatives drawn at random per use and
    ``{token}`` stands for the trainer's token; ``names`` are the image files' names.
    ``resolution`` is the side the images are cropped and resized to (0: the model's
    native size); ``flip`` asks for random horizontal flips while training.
    """

    __socket_type__: ClassVar[str] = t.DATASET

    images: tuple[torch.Tensor, ...]
    captions: tuple[str, ...]
    names: tuple[str, ...]
    resolution: int = 0
    flip: bool = False
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


__all__ = ["match_lengths", "Tokens", "ControlApplication", "Conditioning", "NoiseMask", "Latents", "Image", "Mask", "NoisePred", "SchedulerState", "Embedding",
           "LoraLayer", "Lora", "Dataset", "TextEncoders"]
