"""Helpers shared by the SD nodes: random streams, module placement, latent previews.

Private to the pack (the underscore): nodes import it, plugin authors use the nodes.
"""

from __future__ import annotations

from typing import Any

import torch

# SD 1.x latent channels -> RGB, a least-squares fit of decoded colours on latents
# (the factors ComfyUI and others use for cheap previews). Only meaningful for 4-channel latents.
SD1_LATENT_RGB = torch.tensor(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)

_LATENT_RGB_T = SD1_LATENT_RGB.T.contiguous()  # [3, 4]: tensordot over the channel axis

#: Largest seed the editor can show exactly (JavaScript numbers are doubles).
MAX_SEED = 2**53 - 1


class PerImageStreams(list):  # type: ignore[type-arg]
    """One CPU generator per image of a batch, usable wherever one generator is.

    diffusers draws a batch from a list of generators image by image (``randn_tensor``
    gives row ``i`` from ``generator[i]``), in the initial noise and in every stochastic
    scheduler step, so image ``i`` of a batch seeded ``seed + i`` draws exactly what a
    batch of one seeded ``seed + i`` draws. ``get_state()`` stacks the states ([B, n]),
    which :func:`stream` turns back into streams.
    """

    def get_state(self) -> torch.Tensor:
        """The generators' states, one row per image."""
        return torch.stack([g.get_state() for g in self])


def per_image_streams(seeds: list[int]) -> PerImageStreams:
    """One CPU generator per seed."""
    return PerImageStreams(stream(seed=s) for s in seeds)


def stream(state: torch.Tensor | None = None, seed: int | None = None) -> Any:
    """A CPU generator: continuing ``state`` (a ``get_state()`` tensor), or started from ``seed``.

    CPU generators make a seed give the same numbers on every device, as diffusers
    recommends; with neither argument the stream starts from seed 0 (deterministic).
    A 2-D ``state`` (one row per image) continues :class:`PerImageStreams`.
    """
    if state is not None and state.ndim == 2:
        return PerImageStreams(stream(row) for row in state)
    generator = torch.Generator("cpu")
    if state is not None:
        # A copy: set_state reads from the start of the tensor's storage, so a view into
        # a stack of states (a row, a slice of a batch) would crash it.
        generator.set_state(state.clone())
    else:
        generator.manual_seed(0 if seed is None else seed)
    return generator


def noise(shape: tuple[int, ...], generator: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise drawn exactly as diffusers' ``randn_tensor`` draws it (on the CPU, then moved).

    ``generator`` is one CPU generator or :class:`PerImageStreams` (one per row of ``shape``).
    """
    if isinstance(generator, PerImageStreams) and len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} per-image random streams cannot draw noise for a batch of {shape[0]}")
    from diffusers.utils.torch_utils import randn_tensor  # lazy: importing diffusers takes seconds

    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


def placement(module: Any) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of a model's weights.

    Read from the first parameter: diffusers' ``ModelMixin.device`` walks every
    submodule looking for offload hooks (about a millisecond per call).
    """
    first = next(module.parameters())
    return first.device, first.dtype


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent along one side, as diffusers' pipelines compute it."""
    return int(2 ** (len(vae.config.block_out_channels) - 1))


def latent_channels(unet: Any, vae: Any) -> int:
    """Channels the sampler denoises: the VAE's latent channels (an inpainting UNet takes more, mask and masked image)."""
    return min(int(unet.config.in_channels), int(vae.config.latent_channels))


def latent_preview(samples: torch.Tensor, min_side: int = 64) -> Any:
    """A cheap RGB picture of the first latent in ``samples`` (a PIL image), no VAE involved.

    4-channel latents use SD 1.x's linear latent-to-RGB factors; others show their
    first three channels. Pictures smaller than ``min_side`` are upscaled (nearest) so
    tiny latents stay visible. About 0.1 ms for 64x64 latents: it runs every step.
    """
    from PIL import Image as PILImage

    first = samples[0].detach().to("cpu", torch.float32)
    if first.shape[0] == 4:
        rgb = torch.tensordot(_LATENT_RGB_T, first, dims=1)
    else:
        rgb = (first[:3] if first.shape[0] >= 3 else first[:1].expand(3, -1, -1)).clone()
    # [-1, 1] -> [0, 255] in place on our own fresh tensor.
    pixels = rgb.add_(1.0).mul_(127.5).clamp_(0, 255).to(torch.uint8)
    picture = PILImage.fromarray(pixels.permute(1, 2, 0).numpy())
    side = max(picture.size)
    if side < min_side:
        factor = -(-min_side // side)
        picture = picture.resize((picture.width * factor, picture.height * factor), PILImage.Resampling.NEAREST)
    return picture


class PreviewCopies:
    """Latent previews for a loop on any device, without making the host wait for the GPU.

    On the CPU a preview is drawn at once. On CUDA, :meth:`offer` starts a non-blocking
    copy of the first latent into pinned memory and returns; the picture is shown at a
    later offer, once the copy's event says it is done (a copy still in flight makes
    that offer start no new one). The last offer (``last=True``) waits for its copy:
    the loop is over, and the run's next step (the decode) needs the GPU's work anyway.
    """

    def __init__(self, show: Any):
        self._show = show  # called with each preview picture (ctx.preview)
        self._pending: tuple[torch.Tensor, Any] | None = None

    def offer(self, samples: torch.Tensor, last: bool = False) -> None:
        """A preview of ``samples`` at this step (see the class docstring)."""
        if samples.device.type != "cuda":
            self._show(latent_preview(samples))
            return
        if self._pending is not None:
            if not (last or self._pending[1].query()):
                return
            self._flush()
        copy = torch.empty(tuple(samples.shape[1:]), dtype=samples.dtype, pin_memory=True)
        copy.copy_(samples[0], non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._pending = (copy, done)
        if last:
            self._flush()

    def _flush(self) -> None:
        assert self._pending is not None
        copy, done = self._pending
        self._pending = None
        done.synchronize()
        self._show(latent_preview(copy[None]))
