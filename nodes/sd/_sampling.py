"""One denoising step in three parts, shared by the denoise loop and the step nodes.

Both ways of denoising call these same functions in the same order, so they give the
same tensors by construction; the order inside each function is diffusers'
``StableDiffusionPipeline.__call__`` loop body, so both also match diffusers.

What the UNet is asked at a step is decided by the values, never by a forked sampler:

* :func:`prepare` turns the positive/negative :class:`~nodeflow.values.Conditioning`
  and the :class:`~nodeflow.values.Latents` into a :class:`Prepared` plan, once per run.
  A plan is *plain* when each side is one entry without area, mask, ControlNet or added
  inputs and the latents carry no extra channels: :func:`predict` then runs exactly
  :func:`predict_noise` (today's batch-2 call, bit for bit as before).
* Otherwise entries are grouped into UNet calls (:func:`_groups`): entries that can share
  a batch (same area, same sequence length, same ControlNets) go in one call, rows
  ``[negative entries..., positive entries...]``, so one negative and one positive entry
  give diffusers' own batch-2 call (ControlNet and inpainting pipelines included). Each
  call adds, in this order: ControlNet residuals (computed on the scaled latents, summed
  over ControlNets in the order they were applied, each active for the fractions of the
  schedule in its [start, end], as ``control_guidance_start/end``), the latents' extra
  channels (``Latents.concat``, an inpainting UNet's mask + masked-image latents) and the
  entries' ``added`` tensors as ``added_cond_kwargs`` (SDXL's ``text_embeds``/``time_ids``:
  each spread over the batch and concatenated ``[uncond, cond]`` like the embeddings).
* A side with several entries, an area or a mask is combined as ComfyUI's sampler does:
  ``sum(pred * w) / (sum(w) + 1e-37)`` per latent cell, with ``w`` = the entry's mask
  (bilinear to the latent size) times its strength, inside its area only; an area
  without a mask has its inner edges feathered over up to 8 cells. Cells no entry covers
  predict zero.

After the scheduler step, :func:`keep_unmasked` blends latents that carry a noise mask
(inpainting with an ordinary 4-channel UNet) with their re-noised original, as
``StableDiffusionInpaintPipeline`` does after every step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from nodeflow.interrupt import watch
from nodeflow.values import Conditioning, ControlApplication, Latents, match_lengths

from . import _common
from ._families import check_conditioning

#: ComfyUI's per-cell denominator floor: cells no entry covers come out as 0, not NaN.
_COUNT_FLOOR = 1e-37
#: Cells over which an area's inner edges fade in (ComfyUI's 8).
_FEATHER = 8


def cfg_embeddings(cond: torch.Tensor, uncond: torch.Tensor | None, batch: int) -> torch.Tensor:
    """The UNet's ``encoder_hidden_states``: ``cat([uncond, cond])`` (or ``cond`` alone), one row per latent."""
    cond = _match_batch(cond, batch)
    if uncond is None:
        return cond
    uncond, cond = match_lengths(_match_batch(uncond, batch), cond)
    return torch.cat([uncond, cond])


def _match_batch(embeddings: torch.Tensor, batch: int) -> torch.Tensor:
    # diffusers' num_images_per_prompt: repeat each prompt's embedding for its images.
    if embeddings.shape[0] == batch:
        return embeddings
    if batch % embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} prompt(s) cannot be spread over a batch of {batch} latents")
    per_prompt = batch // embeddings.shape[0]
    return embeddings.repeat_interleave(per_prompt, dim=0)


def _tile(tensor: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    # diffusers' inpainting pipeline tiles masks and image latents over the batch (repeat, not interleave).
    if tensor.shape[0] == batch:
        return tensor
    if batch % tensor.shape[0]:
        raise ValueError(f"{tensor.shape[0]} {what} cannot be spread over a batch of {batch} latents")
    return tensor.repeat(batch // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def predict_noise(
    unet: Any, scheduler: Any, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, guided: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One UNet call: ``(cond, uncond)`` predictions, from one batch-2 call when ``guided``.

    ``scheduler.scale_model_input`` may update the scheduler's step bookkeeping, so
    pass a scheduler this call may change.
    """
    watch(unet)  # a cancel reaches between the UNet's blocks (nodeflow.interrupt)
    model_input = torch.cat([latents] * 2) if guided else latents
    if hasattr(scheduler, "scale_model_input"):
        model_input = scheduler.scale_model_input(model_input, t)
    with torch.no_grad():
        out = unet(
            model_input,
            t,
            encoder_hidden_states=embeddings,
            timestep_cond=None,
            cross_attention_kwargs=None,
            added_cond_kwargs=None,
            return_dict=False,
        )[0]
    if not guided:
        return out, None
    uncond, cond = out.chunk(2)
    return cond, uncond


# ------------------------------------------------------------------------------ plans
@dataclass(frozen=True, eq=False)
class _Entry:
    """One conditioning entry made ready for a run: rows spread over the batch, its box and weight."""

    cond: Conditioning
    side: int  # 0: unconditional (negative), 1: conditional (positive)
    rows: torch.Tensor
    added: dict[str, torch.Tensor]
    box: tuple[int, int, int, int] | None  # (y, x, height, width) in latent cells
    weight: torch.Tensor | None  # [1 or B, 1, height, width]; None: the side's only, full-frame entry
    controls: tuple[tuple[ControlApplication, torch.Tensor], ...] = ()  # with the image ready for this box


@dataclass(frozen=True)
class Prepared:
    """What the UNet is asked at every step of one run (see the module docstring)."""

    guided: bool
    embeddings: torch.Tensor | None = None  # the plain path's encoder_hidden_states
    groups: tuple[tuple[_Entry, ...], ...] = ()
    sides: tuple[tuple[_Entry, ...], ...] = ()
    concat: torch.Tensor | None = None  # extra input channels, over the batch

    @property
    def plain(self) -> bool:
        """Whether :func:`predict` is exactly :func:`predict_noise`."""
        return self.embeddings is not None


def prepare(unet: Any, positive: Conditioning, negative: Conditioning | None, latents: Latents) -> Prepared:
    """The plan for denoising ``latents`` with ``positive`` (and ``negative``: guided when given).

    Conditioning made for another model family than the UNet's is refused here, naming both.
    """
    check_conditioning(unet, positive, "positive")
    if negative is not None:
        check_conditioning(unet, negative, "negative")
    samples = latents.samples
    concat = _concat_for(unet, latents)
    sides = [negative.entries, positive.entries] if negative is not None else [positive.entries]
    guided = negative is not None
    if concat is None and all(len(s) == 1 and _is_plain(s[0]) for s in sides):
        embeddings = cfg_embeddings(positive.embeddings, negative.embeddings if negative is not None else None, samples.shape[0])
        return Prepared(guided, embeddings=embeddings)
    entries = [_entry(e, side_index if guided else 1, len(side) == 1, latents) for side_index, side in enumerate(sides) for e in side]
    ready_sides = tuple(tuple(e for e in entries if e.side == s) for s in ((0, 1) if guided else (1,)))
    return Prepared(guided, groups=_groups(entries), sides=ready_sides, concat=concat)


def _is_plain(entry: Conditioning) -> bool:
    return entry.area is None and entry.mask is None and not entry.controls and not entry.added


def _concat_for(unet: Any, latents: Latents) -> torch.Tensor | None:
    """The latents' extra channels over the batch when ``unet`` takes them; a clear error when it needs them."""
    channels, wanted = latents.samples.shape[1], int(unet.config.in_channels)
    extra = latents.concat
    if extra is not None and wanted == channels + extra.shape[1]:
        batch = latents.samples.shape[0]
        return _tile(extra, batch, "inpainting conditions").to(latents.samples.device, latents.samples.dtype)
    if wanted == channels:
        return None
    if extra is None:
        raise ValueError(f"this UNet takes {wanted} input channels and the latents have {channels}: an inpainting UNet needs "
                         "latents from Inpaint Model Conditioning (or VAE Encode for Inpaint)")
    raise ValueError(f"this UNet takes {wanted} input channels, the latents have {channels} and carry {extra.shape[1]} extra ones")


def _entry(cond: Conditioning, side: int, alone: bool, latents: Latents) -> _Entry:
    batch, _, height, width = latents.samples.shape
    box = _box(cond.area, latents.vae_factor, height, width)
    rows = _match_batch(cond.embeddings, batch)
    added = {name: _match_batch(value, batch) for name, value in cond.added.items()}
    weight = None if alone and box is None and cond.mask is None else _weight(cond, box, height, width, latents.samples)
    controls = tuple((app, _control_image(app, box, latents)) for app in cond.controls)
    return _Entry(cond, side, rows, added, box, weight, controls)


def _box(area: tuple[int, int, int, int] | None, factor: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """A pixel area ``(x, y, w, h)`` as latent cells ``(y, x, h, w)``, clipped to the latents (ComfyUI's rounding down)."""
    if area is None:
        return None
    x, y, w, h = (v // factor for v in area)
    y, x = min(y, height - 1), min(x, width - 1)
    return y, x, max(1, min(h, height - y)), max(1, min(w, width - x))


def _weight(cond: Conditioning, box: tuple[int, int, int, int] | None, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """The entry's per-cell weight inside its box: mask (bilinear to the latent size) x strength, feathered areas."""
    if cond.mask is not None:
        mask = torch.nn.functional.interpolate(cond.mask.to(torch.float32), size=(height, width), mode="bilinear", align_corners=False)
        weight = _crop(mask, box).to(like.device, like.dtype)
    else:
        h, w = (box[2], box[3]) if box is not None else (height, width)
        weight = torch.ones((1, 1, h, w), device=like.device, dtype=like.dtype)
    weight = weight * cond.strength
    if box is not None and cond.mask is None:
        y, x, h, w = box
        weight = weight * _ramp(h, y > 0, y + h < height, like)[:, None] * _ramp(w, x > 0, x + w < width, like)[None, :]
    return weight


def _ramp(length: int, fade_start: bool, fade_end: bool, like: torch.Tensor) -> torch.Tensor:
    """ComfyUI's area feathering along one axis: the first/last cells weigh 1/8, 2/8, ... 8/8."""
    ramp = torch.ones(length, dtype=like.dtype, device=like.device)
    for t in range(min(_FEATHER, length)):
        if fade_start:
            ramp[t] *= (t + 1) / _FEATHER
        if fade_end:
            ramp[length - 1 - t] *= (t + 1) / _FEATHER
    return ramp


def _crop(tensor: torch.Tensor, box: tuple[int, int, int, int] | None, factor: int = 1) -> torch.Tensor:
    if box is None:
        return tensor
    y, x, h, w = (v * factor for v in box)
    return tensor[..., y : y + h, x : x + w]


def _control_image(app: ControlApplication, box: tuple[int, int, int, int] | None, latents: Latents) -> torch.Tensor:
    """The control image at the ControlNet's resolution for these latents (Lanczos when resized), cropped to ``box``."""
    factor = control_factor(app.controlnet)
    batch, _, height, width = latents.samples.shape
    image = app.image
    if image.shape[0] not in (1, batch):
        raise ValueError(f"the control image holds {image.shape[0]} pictures for {batch} latents: give 1, or one per latent")
    if tuple(image.shape[-2:]) != (height * factor, width * factor):
        image = resize_pixels(image, width * factor, height * factor)
    return _crop(image, box, factor)


def control_factor(controlnet: Any) -> int:
    """Pixels per latent cell of a ControlNet's conditioning embedding (8 for SD's)."""
    return int(2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1))


def resize_pixels(pixels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[B, C, H, W] float [0, 1] resized with PIL Lanczos on 8-bit pixels, as diffusers' image processor does."""
    import numpy as np
    from PIL import Image as PILImage

    frames = []
    for one in pixels:
        array = (one.detach().cpu().permute(1, 2, 0).float().numpy() * 255).round().astype("uint8")
        picture = PILImage.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        resized = np.array(picture.resize((width, height), resample=PILImage.Resampling.LANCZOS)).astype(np.float32) / 255.0
        frames.append(resized if resized.ndim == 3 else resized[..., None])
    return torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2))


def _group_key(entry: _Entry) -> tuple[Any, ...]:
    added = tuple(sorted((name, tuple(value.shape[1:])) for name, value in entry.added.items()))
    return entry.box, tuple(entry.rows.shape[1:]), added, tuple(id(app) for app, _ in entry.controls)


def _groups(entries: list[_Entry]) -> tuple[tuple[_Entry, ...], ...]:
    """Entries that can share one UNet call, in order (negative entries first within a call)."""
    found: dict[tuple[Any, ...], list[_Entry]] = {}
    for entry in entries:
        found.setdefault(_group_key(entry), []).append(entry)
    return tuple(tuple(group) for group in found.values())


# ----------------------------------------------------------------------------- a step
def predict(
    unet: Any, scheduler: Any, plan: Prepared, latents: torch.Tensor, t: torch.Tensor, step: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(cond, uncond)`` noise predictions at ``t`` following ``plan``.

    ``step`` is ``(i, n)``: this step's position among the run's ``n`` timesteps, for
    ControlNets' start/end. Like :func:`predict_noise`, may advance ``scheduler``'s bookkeeping.
    """
    if plan.plain:
        return predict_noise(unet, scheduler, latents, t, plan.embeddings, plan.guided)  # type: ignore[arg-type]
    predictions: dict[int, torch.Tensor] = {}
    for group in plan.groups:
        for entry, pred in zip(group, _call(unet, scheduler, plan, group, latents, t, step), strict=True):
            predictions[id(entry)] = pred
    combined = [_combine(side, predictions, latents) for side in plan.sides]
    return (combined[1], combined[0]) if plan.guided else (combined[0], None)


def _call(
    unet: Any, scheduler: Any, plan: Prepared, group: tuple[_Entry, ...], latents: torch.Tensor, t: torch.Tensor, step: tuple[int, int]
) -> tuple[torch.Tensor, ...]:
    """One UNet call for ``group``: its predictions, one per entry."""
    n = len(group)
    box = group[0].box
    watch(unet)
    x = _crop(latents, box)
    model_input = torch.cat([x] * n) if n > 1 else x
    if hasattr(scheduler, "scale_model_input"):
        model_input = scheduler.scale_model_input(model_input, t)
    embeddings = torch.cat(match_lengths(*(e.rows for e in group))) if n > 1 else group[0].rows
    added = {name: torch.cat([e.added[name] for e in group]) if n > 1 else group[0].added[name] for name in group[0].added}
    kwargs: dict[str, Any] = {}
    with torch.no_grad():
        residuals = _control_residuals(group, model_input, t, embeddings, added, step)
        if residuals is not None:
            kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"] = residuals
        if plan.concat is not None:
            extra = _crop(plan.concat, box)
            model_input = torch.cat([model_input, torch.cat([extra] * n) if n > 1 else extra], dim=1)
        out = unet(
            model_input,
            t,
            encoder_hidden_states=embeddings,
            timestep_cond=None,
            cross_attention_kwargs=None,
            added_cond_kwargs=added or None,
            **kwargs,
            return_dict=False,
        )[0]
    return out.chunk(n) if n > 1 else (out,)


def control_active(app: ControlApplication, step: tuple[int, int]) -> bool:
    """Whether ``app`` acts at step ``(i, n)``: diffusers' ``controlnet_keep`` is 1 there."""
    i, n = step
    return not (i / n < app.start or (i + 1) / n > app.end)


def _control_residuals(
    group: tuple[_Entry, ...], model_input: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor,
    added: dict[str, torch.Tensor], step: tuple[int, int],
) -> tuple[list[torch.Tensor], torch.Tensor] | None:
    """The group's ControlNet residuals, summed over its active ControlNets in order (None when none acts).

    A ControlNet outside its [start, end] is skipped; diffusers runs it with scale 0,
    which adds exact zeros.
    """
    down: list[torch.Tensor] | None = None
    mid: torch.Tensor | None = None
    n = len(group)
    for app, image in group[0].controls:
        if not control_active(app, step):
            continue
        device, dtype = _common.placement(watch(app.controlnet))
        rows = image.repeat_interleave(model_input.shape[0] // n // image.shape[0], dim=0).to(device=device, dtype=dtype)
        cond_image = torch.cat([rows] * n) if n > 1 else rows
        extra = {"added_cond_kwargs": added} if added else {}
        d, m = app.controlnet(model_input, t, encoder_hidden_states=embeddings, controlnet_cond=cond_image,
                              conditioning_scale=app.scale, guess_mode=False, return_dict=False, **extra)
        if down is None or mid is None:
            down, mid = list(d), m
        else:  # MultiControlNetModel's order: the first net's residuals plus each next one's
            down = [a + b for a, b in zip(down, d, strict=True)]
            mid = mid + m
    return None if down is None or mid is None else (down, mid)


def _combine(side: tuple[_Entry, ...], predictions: dict[int, torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
    """One side's prediction: its only full-frame entry's, or the weighted mean of its entries'."""
    if len(side) == 1 and side[0].weight is None:
        return predictions[id(side[0])]
    first = predictions[id(side[0])]
    shape = (latents.shape[0], first.shape[1], *latents.shape[2:])
    total = torch.zeros(shape, device=first.device, dtype=first.dtype)
    count = torch.full(shape, _COUNT_FLOOR, device=first.device, dtype=first.dtype)
    for entry in side:
        weight = entry.weight if entry.weight is not None else torch.ones_like(first[:, :1])
        _crop(total, entry.box).add_(predictions[id(entry)] * weight)  # our own fresh tensors, written through views
        _crop(count, entry.box).add_(weight)
    return total / count


def guide(cond: torch.Tensor, uncond: torch.Tensor | None, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance ``u + g * (c - u)``, then diffusers' ``rescale_noise_cfg`` when ``rescale > 0``.

    With no unconditional prediction, or ``scale <= 1`` (where diffusers skips
    guidance), the conditional prediction is returned as it is.
    """
    if uncond is None or scale <= 1.0:
        return cond
    guided = uncond + scale * (cond - uncond)
    if rescale > 0.0:
        # diffusers' own function (lazily: the pipeline module is slow to import) keeps this bit-identical.
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        guided = rescale_noise_cfg(guided, cond, guidance_rescale=rescale)
    return guided  # type: ignore[no-any-return]


def scheduler_step(
    scheduler: Any, noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, generator: torch.Generator, eta: float
) -> torch.Tensor:
    """``scheduler.step`` with the pipeline's extra arguments (``eta``, ``generator``) where accepted.

    Advances ``scheduler`` (its step index and history) and ``generator``.
    """
    params = _step_params(type(scheduler))
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return scheduler.step(noise_pred, t, latents, **kwargs, return_dict=False)[0]  # type: ignore[no-any-return]


def keep_unmasked(scheduler: Any, latents: Latents, samples: torch.Tensor, next_t: torch.Tensor | None) -> torch.Tensor:
    """``samples`` after a step, blended outside ``latents``' noise mask with the original re-noised to ``next_t``.

    The 4-channel branch of ``StableDiffusionInpaintPipeline``'s loop (``next_t`` is None
    after the last step: the clean original is kept). Latents without a noise mask, or
    carrying an inpainting UNet's extra channels (which diffusers does not blend), pass
    through unchanged. Call it with the scheduler that just stepped (its step index counts).
    """
    noise_mask = latents.noise_mask
    if noise_mask is None or latents.concat is not None:
        return samples
    if noise_mask.noise is None:
        raise ValueError("the latents carry a noise mask but no noise: run them through Img2Img Init after Set Latent Noise Mask")
    batch = samples.shape[0]
    mask = _tile(noise_mask.mask, batch, "masks").to(samples.device, samples.dtype)
    original = _tile(noise_mask.original, batch, "original latents")
    if next_t is not None:
        original = scheduler.add_noise(original, noise_mask.noise, torch.tensor([next_t]))
    return (1 - mask) * original + mask * samples  # type: ignore[no-any-return]


_PARAMS: dict[type, frozenset[str]] = {}


def _step_params(cls: type) -> frozenset[str]:
    # inspect.signature costs ~20 us; a sampler asks every step.
    found = _PARAMS.get(cls)
    if found is None:
        found = _PARAMS[cls] = frozenset(inspect.signature(cls.step).parameters)  # type: ignore[attr-defined]
    return found
