"""Training nodes: textual inversion (``sd.train_textual_inversion``) and DreamBooth-style LoRA (``sd.train_lora``).

Both are long nodes: progress after every step carries the loss, a sample picture is
offered as a preview every ``sample_every`` steps, the result file in the run's output
folder is rewritten every ``save_every`` steps (atomically), and a cancelled run stops
between steps leaving that file as it was at the last save. The loss is diffusers' (see
:mod:`nodeflow.training.objective`); one seeded CPU generator makes a run reproducible
for a seed and a thread count. The model's modules are never changed: training happens
on copies that share their frozen weights.

Their cache key is the usual one (the dataset node's key covers the folder's files)
plus the output folder, so a re-run with nothing changed is served from the cache, and
one into another folder trains again (and writes its file there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.training import dataset as datasets
from nodeflow.training import frozen_copy
from nodeflow.training.loop import Schedule
from nodeflow.training.lora import LoraTraining
from nodeflow.training.objective import Objective
from nodeflow.training.textual_inversion import Inversion, token_problem
from nodeflow.values import Dataset, Embedding, Lora

from . import _common, _training
from .text import _expand_multi_vector_tokens

# Inputs both trainers take (a declaration is copied and named per node, so sharing one is safe).
_TOKENIZER = Input("TOKENIZER")
_TEXT_ENCODER = Input("TEXT_ENCODER")
_UNET = Input("UNET")
_VAE = Input("VAE", description="encodes the training images")
_SCHEDULER_CONFIG = Input("SCHEDULER_CONFIG", description="the model's scheduler config (Load Model's): its noise schedule")
_DATASET = Input("DATASET")
_STEPS = Input("INT", default=500, min=1, max=1_000_000)
_BATCH_SIZE = Input("INT", default=4, min=1, max=256)
_SEED = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
_SAVE_EVERY = Input("INT", default=100, min=0, max=1_000_000,
                    description="rewrite the result file every N steps (and after the last); 0: after the last only")
_SAMPLE_EVERY = Input("INT", default=100, min=0, max=1_000_000, description="offer a sample picture as a preview every N steps; 0: never")
_SAMPLE_PROMPT = Input("STRING", default="", description="prompt of the samples ({token} = the token); empty: the first caption")
_NAME = Input("STRING", default="", description="file name in the output folder (.safetensors added); empty: from the token")
_LOSS = Output("FLOAT", description="mean loss of the last tenth of the steps")


def _fingerprint(ctx: Context) -> str:
    return str(Path(ctx.output_dir).resolve())  # where the file goes is part of the result


@node("sd.train_textual_inversion", display_name="Train Textual Inversion", category="sd/training", version="1.0.0", pure=False)
class TrainTextualInversion:
    """Learn a new token's embedding from a dataset (textual inversion); everything else stays frozen.

    Writes ``<name>.safetensors`` (diffusers' layout, ``{token: [n, D]}``) to the output
    folder; the EMBEDDING output feeds Textual Inversion's ``trained`` input.
    """

    tokenizer = _TOKENIZER
    text_encoder = _TEXT_ENCODER
    unet = _UNET
    vae = _VAE
    scheduler_config = _SCHEDULER_CONFIG
    dataset = _DATASET
    token = Input("STRING", default="<concept>", description="the new word, e.g. <my-cat>; not a word the tokenizer knows")
    initializer = Input("STRING", default="", description="a known word close to the concept (one token): the starting vectors")
    vectors = Input("INT", default=1, min=1, max=16, description="vectors for the token (tok, tok_1...)")
    steps = _STEPS
    learning_rate = Input("FLOAT", default=5e-3, min=0.0, max=1.0, step=1e-4)
    batch_size = _BATCH_SIZE
    seed = _SEED
    save_every = _SAVE_EVERY
    sample_every = _SAMPLE_EVERY
    sample_prompt = _SAMPLE_PROMPT
    name = _NAME
    embedding = Output("EMBEDDING")
    loss = _LOSS

    def validate_inputs(self, check: ValidationContext, token: str | None = None, initializer: str | None = None,
                        learning_rate: float | None = None, **other: Any) -> list[ErrorInfo]:
        found = []
        problem = None if token is None else token_problem(token)
        if problem is not None:
            found.append(ErrorInfo("invalid_value", problem, input="token"))
        if initializer is not None and not initializer.strip():
            found.append(ErrorInfo("invalid_value", "give an initializer: a known word close to the concept", input="initializer"))
        template = _training.caption_template(check)
        if template is not None and token and datasets.alternatives(template) and datasets.TOKEN not in template and token not in template:
            found.append(ErrorInfo("invalid_value", f"the dataset's caption names neither {datasets.TOKEN} nor {token}", input="dataset"))
        rate = _training.rate_problem(learning_rate)
        return found + ([rate] if rate else [])

    def fingerprint(self, ctx: Context, **inputs: Any) -> str:
        return _fingerprint(ctx)

    def run(self, ctx: Context, tokenizer: Any, text_encoder: Any, unet: Any, vae: Any, scheduler_config: dict[str, Any],
            dataset: Dataset, token: str, initializer: str, vectors: int, steps: int, learning_rate: float, batch_size: int,
            seed: int, save_every: int, sample_every: int, sample_prompt: str, name: str) -> dict[str, Any]:
        generator = _common.stream(seed=seed)
        inversion = Inversion(tokenizer, text_encoder, token, initializer.strip(), vectors)
        size = _training.native_size(unet, vae)
        data = _training.sampler(dataset, inversion.prompt_token, size, generator)
        _training.require_token(dataset, data.captions, inversion.prompt_token)
        unet_copy = frozen_copy(unet)
        step = _training.Step(Objective(unet_copy, vae, scheduler_config), inversion.tokenizer, inversion.text_encoder, [data],
                              batch_size, _training.adamw(inversion.parameters(), learning_rate), generator)
        prompt = _expand_multi_vector_tokens((sample_prompt or data.captions[0][0]).replace(datasets.TOKEN, token), inversion.tokenizer)

        def sample() -> Any:
            return _training.sample_image(inversion.tokenizer, inversion.text_encoder, unet_copy, vae, scheduler_config, prompt,
                                          seed, dataset.resolution or size)

        losses = _training.train(ctx, Schedule(steps, save_every, sample_every), step, _training.output_path(ctx, name or token.strip("<>")),
                                 "embedding", inversion.file_tensors, {"token": token, "initializer": initializer}, sample)
        result: Embedding = inversion.embedding()
        return {"embedding": result, "loss": _training.final_loss(losses)}


@node("sd.train_lora", display_name="Train LoRA", category="sd/training", version="1.0.0", pure=False)
class TrainLora:
    """Fine-tune LoRA adapters on a dataset, DreamBooth-style; the model itself stays frozen.

    Adapters go on the UNet's attention projections (and the text encoder's, when asked).
    Optional prior preservation trains on class images too, so the class keeps its look.
    Writes ``<name>.safetensors`` (kohya layout) to the output folder; the LORA output
    feeds the LoRA node's ``trained`` input.
    """

    tokenizer = _TOKENIZER
    text_encoder = _TEXT_ENCODER
    unet = _UNET
    vae = _VAE
    scheduler_config = _SCHEDULER_CONFIG
    dataset = _DATASET
    prior = Input("DATASET", optional=True, description="class images for prior preservation (e.g. other digits)")
    prior_weight = Input("FLOAT", default=1.0, min=0.0, max=100.0, step=0.1, description="weight of the class images' loss")
    token = Input("STRING", default="sks", description="what {token} in the captions stands for")
    rank = Input("INT", default=4, min=1, max=1024, description="inner dimension of each adapter")
    alpha = Input("FLOAT", default=0.0, min=0.0, max=4096.0, description="scale numerator (alpha / rank); 0: equal to the rank")
    train_text_encoder = Input("BOOL", default=False, description="also adapt the text encoder's attention")
    steps = _STEPS
    learning_rate = Input("FLOAT", default=1e-4, min=0.0, max=1.0, step=1e-5)
    batch_size = _BATCH_SIZE
    seed = _SEED
    save_every = _SAVE_EVERY
    sample_every = _SAMPLE_EVERY
    sample_prompt = _SAMPLE_PROMPT
    name = _NAME
    lora = Output("LORA")
    loss = _LOSS

    def validate_inputs(self, check: ValidationContext, token: str | None = None, learning_rate: float | None = None,
                        **other: Any) -> list[ErrorInfo]:
        found = []
        template = _training.caption_template(check)
        if template is not None and datasets.TOKEN in template and token is not None and not token.strip():
            found.append(ErrorInfo("invalid_value", f"the dataset's caption uses {datasets.TOKEN}: give a token", input="token"))
        rate = _training.rate_problem(learning_rate)
        return found + ([rate] if rate else [])

    def fingerprint(self, ctx: Context, **inputs: Any) -> str:
        return _fingerprint(ctx)

    def run(self, ctx: Context, tokenizer: Any, text_encoder: Any, unet: Any, vae: Any, scheduler_config: dict[str, Any],
            dataset: Dataset, prior_weight: float, token: str, rank: int, alpha: float, train_text_encoder: bool, steps: int,
            learning_rate: float, batch_size: int, seed: int, save_every: int, sample_every: int, sample_prompt: str, name: str,
            prior: Dataset | None = None) -> dict[str, Any]:
        generator = _common.stream(seed=seed)
        adapters = LoraTraining(unet, text_encoder, rank, alpha or float(rank), train_text_encoder, generator)
        size = _training.native_size(unet, vae)
        samplers = [_training.sampler(dataset, token.strip(), size, generator)]
        if prior is not None:
            samplers.append(_training.sampler(prior, token.strip(), size, generator, what="prior"))
        step = _training.Step(Objective(adapters.unet, vae, scheduler_config), tokenizer, adapters.text_encoder, samplers, batch_size,
                              _training.adamw(adapters.parameters(), learning_rate), generator,
                              prior_weight=prior_weight if prior is not None else None, clip_norm=1.0)
        prompt = (sample_prompt or samplers[0].captions[0][0]).replace(datasets.TOKEN, token.strip())

        def sample() -> Any:
            return _training.sample_image(tokenizer, adapters.text_encoder, adapters.unet, vae, scheduler_config, prompt, seed,
                                          dataset.resolution or size)

        metadata = {"ss_network_dim": str(rank), "ss_network_alpha": str(alpha or float(rank)), "ss_network_module": "networks.lora"}
        losses = _training.train(ctx, Schedule(steps, save_every, sample_every), step, _training.output_path(ctx, name or f"lora_{ctx.node_id}"),
                                 "lora", adapters.file_tensors, metadata, sample)
        result: Lora = adapters.value(source=f"trained by node {ctx.node_id}")
        return {"lora": result, "loss": _training.final_loss(losses)}


NODES = [TrainTextualInversion, TrainLora]
