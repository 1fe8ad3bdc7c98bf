"""Load a Stable Diffusion model (``sd.load_model``) or a stand-alone VAE (``sd.load_vae``) through the model store.

The store loads each model once per process (a diffusers folder, a single-file
``.safetensors`` checkpoint, or the embedded ``"default"`` model) and shares it across
runs; this node only picks the path, precision and device.

Precision: the node's ``dtype`` wins; ``auto`` means the store's default (``nodeflow
run --dtype``), which itself defaults to fp16 on CUDA and fp32 on the CPU.

Compilation (the fast path, :mod:`nodeflow.models.fast`) follows the same rule: the
node's ``compile`` wins; ``auto`` means the store's (``nodeflow run --compile``), off by
default. A compiled UNet and VAE are derived models in the store, built once per
process and model (Load VAE's ``compile`` does the same for its VAE); the text encoder is
never compiled (it runs once per prompt).
"""

from __future__ import annotations

from typing import Any

from nodeflow.budget import BudgetCheck, ModelFacts
from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp_text
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import TextEncoders

#: The embedded digits model, by name.
DEFAULT = "default"


#: The node's compile choices -> ``torch.compile`` mode (None: the eager default path; ``auto`` asks the store).
COMPILE_CHOICES: dict[str, str | None] = {"auto": None, "off": None, "on": "default", "reduce-overhead": "reduce-overhead",
                                          "max-autotune": "max-autotune"}


def compile_mode(ctx: Context, choice: str | None) -> str | None:
    """The ``torch.compile`` mode a load node's ``compile`` choice means in this run (None: off)."""
    if choice in (None, "auto"):
        return ctx.models.compile
    return COMPILE_CHOICES[choice]


@node("sd.load_model", display_name="Load Model", category="sd/loaders", version="1.3.0", pure=False)
class LoadModel:
    """Load an SD 1.x, SD 2.x or SDXL (base or refiner) model from a local path.

    A diffusers folder, a single-file .safetensors checkpoint or "default". ``clip``
    carries the model's tokenizers and text encoders with its family: SDXL prompts go
    through SDXL Text Encode from it. ``tokenizer``/``text_encoder`` are the first pair
    (SD 1.x/2.x's only one, SDXL's CLIP-L; nothing for the refiner, which has none).
    """

    model = Input("STRING", default=DEFAULT, widget="model",
                  description='a diffusers folder, a single-file .safetensors checkpoint (by path, or by name in the'
                              ' checkpoint folders), or "default" (the embedded digits model)')
    dtype = Input("STRING", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                  description="weight precision; auto: nodeflow run --dtype, else fp16 on CUDA and fp32 on the CPU")
    device = Input("STRING", default="auto", choices=["auto", "cpu", "cuda"], description="auto: CUDA when present, else CPU")
    compile = Input("STRING", default="auto", choices=list(COMPILE_CHOICES),
                    description="torch.compile the UNet and VAE decoder (faster steps after a one-off compile, small"
                                " numerical differences); auto: nodeflow run --compile, else off; reduce-overhead adds CUDA graphs")
    prediction = Input("STRING", default="auto", choices=["auto", "epsilon", "v_prediction"],
                       description="what the UNet predicts; auto: the model's scheduler config (SD 2.x 768 models: v_prediction)")
    tokenizer = Output("TOKENIZER")
    text_encoder = Output("TEXT_ENCODER")
    unet = Output("UNET")
    vae = Output("VAE")
    scheduler_config = Output("SCHEDULER_CONFIG", aliases=("scheduler",), description="the model's scheduler config (a dict)")
    clip = Output("CLIP", description="tokenizers and text encoders with the model's family (for SDXL Text Encode)")

    def validate_inputs(self, check: ValidationContext, model: str | None = None, **other: Any) -> ErrorInfo | None:
        if model == "":
            return ErrorInfo("missing_input", "no model given: set it to a diffusers folder or a single-file .safetensors checkpoint"
                             " (nodeflow run ... --set model=PATH)", input="model")
        if model is None or model == DEFAULT or check.paths is None:
            return None
        try:
            check.paths.resolve(model, "checkpoint")
        except (OSError, ValueError) as exc:
            return ErrorInfo("missing_file", str(exc).strip("'\""), input="model")
        return None

    def model_facts(self, check: BudgetCheck, model: Any = None, dtype: Any = "auto", **other: Any) -> ModelFacts | None:
        """Width and size of the model, read from its configs and weight headers (for the run budget)."""
        from nodeflow.models.facts import model_facts
        from nodeflow.resources import DEFAULT_MODEL_DIR

        if not isinstance(model, str) or not isinstance(dtype, str):
            return None
        if model == DEFAULT:
            return model_facts(DEFAULT_MODEL_DIR, dtype)
        if check.paths is None:
            return None
        try:
            return model_facts(check.paths.resolve(model, "checkpoint"), dtype)
        except (OSError, ValueError):
            return None

    def fingerprint(self, ctx: Context, model: str | None = None, dtype: str | None = None, device: str | None = None,
                    compile: str | None = None, prediction: str | None = None) -> str:
        return f"{self._weights(ctx, model, dtype, device, compile)}:{prediction or 'auto'}"

    def _weights(self, ctx: Context, model: str | None, dtype: str | None, device: str | None, compile: str | None) -> str:
        # Key on the weights' stamp and on the precision, device and compile mode "auto" resolves
        # to, so a disk cache never mixes fp32 and fp16, CPU and CUDA, or compiled and eager results.
        where = ctx.models.resolve_device(None if device in (None, "auto") else device)
        precision = ctx.models.default_dtype(where) if dtype in (None, "auto") else dtype
        mode = compile_mode(ctx, compile)
        how = f"{precision}:{where}" + (f":compile={mode}" if mode else "")
        if model is None:
            return f"linked:{how}"
        if model == DEFAULT:
            return f"default:{how}"
        try:
            return f"{stamp_text(ctx.paths.resolve(model, 'checkpoint'))}:{how}"
        except (OSError, ValueError):
            return f"missing:{model}"

    def run(self, ctx: Context, model: str, dtype: str, device: str, compile: str = "auto", prediction: str = "auto") -> dict[str, Any]:
        path = model if model == DEFAULT else ctx.paths.resolve(model, "checkpoint")
        parts = ctx.models.load_sd(path, dtype=None if dtype == "auto" else dtype, device=None if device == "auto" else device,
                                   prediction_type=None if prediction == "auto" else prediction)
        clip = TextEncoders(parts.family.value, parts.tokenizer, parts.text_encoder, parts.tokenizer_2, parts.text_encoder_2,
                            dict(parts.pipeline_config))
        unet, vae = parts.unet, parts.vae
        mode = compile_mode(ctx, compile)
        if mode is not None:
            unet, vae = _compiled(ctx, unet, vae, mode)
        return {
            "tokenizer": parts.tokenizer,
            "text_encoder": parts.text_encoder,
            "unet": unet,
            "vae": vae,
            "scheduler_config": dict(parts.scheduler_config),
            "clip": clip,
        }


def _compiled(ctx: Context, unet: Any, vae: Any, mode: str) -> tuple[Any, Any]:
    """The fast path's UNet and VAE for these loaded ones, built once per process (derived models in the store)."""
    from nodeflow.models.fast import compiled_unet

    return _fast(ctx, "unet", unet, mode, compiled_unet), _compiled_vae(ctx, vae, mode)


def _compiled_vae(ctx: Context, vae: Any, mode: str) -> Any:
    from nodeflow.models.fast import compiled_vae

    return _fast(ctx, "vae", vae, mode, compiled_vae)


def _fast(ctx: Context, kind: str, module: Any, mode: str, build: Any) -> Any:
    # Each entry keeps its base alive, so the base's id() cannot be reused while it is stored.
    return ctx.models.derived(("compiled", kind, id(module), mode), lambda: (module, build(module, mode)))[1]


@node("sd.load_vae", display_name="Load VAE", category="sd/loaders", version="1.1.0", pure=False)
class LoadVAE:
    """Load a VAE on its own (a diffusers folder or a single .safetensors file), to use instead of the model's.

    Single files in the original layout (ComfyUI's and A1111's ``models/vae`` files,
    e.g. ``vae-ft-mse-840000-ema-pruned.safetensors``) and in diffusers' layout load
    offline; the store keeps one copy per file, precision and device.
    """

    path = Input("STRING", widget="model", file="vae",
                 description="a diffusers VAE folder or a .safetensors file, by path or by name in the vae folders")
    scaling_factor = Input("FLOAT", default=0.0, min=0.0, max=10.0, step=0.00001,
                           description="the latents' scale; 0: the folder's config, or 0.18215 (SD 1.x/2.x) for a single file")
    dtype = Input("STRING", default="auto", choices=["auto", "fp32", "fp16", "bf16"], description="auto: as Load Model's auto")
    device = Input("STRING", default="auto", choices=["auto", "cpu", "cuda"], description="auto: CUDA when present, else CPU")
    compile = Input("STRING", default="auto", choices=list(COMPILE_CHOICES),
                    description="torch.compile the decoder, as Load Model's compile does its VAE's; auto: nodeflow run --compile")
    vae = Output("VAE")

    def fingerprint(self, ctx: Context, dtype: str | None = None, device: str | None = None, compile: str | None = None,
                    **other: Any) -> str:
        # The file's stamp joins the key through file=; "auto" must key on what it resolves to.
        where = ctx.models.resolve_device(None if device in (None, "auto") else device)
        mode = compile_mode(ctx, compile)
        return f"{ctx.models.default_dtype(where) if dtype in (None, 'auto') else dtype}:{where}" + (f":compile={mode}" if mode else "")

    def run(self, ctx: Context, path: str, scaling_factor: float, dtype: str, device: str, compile: str = "auto") -> Any:
        from nodeflow.models.store import DTYPES
        from nodeflow.models.vae import load_vae

        where = ctx.models.resolve_device(None if device == "auto" else device)
        precision = ctx.models.default_dtype(where) if dtype == "auto" else dtype
        real = ctx.paths.resolve(path, "vae")
        vae = ctx.models.derived(("vae", stamp_text(real), precision, where, float(scaling_factor)),
                                 lambda: load_vae(real, DTYPES[precision], where, ctx.models.allow_pickle, scaling_factor))
        mode = compile_mode(ctx, compile)
        return vae if mode is None else _compiled_vae(ctx, vae, mode)


NODES = [LoadModel, LoadVAE]
