"""The training nodes on a tiny model: diffusers' numbers, determinism, frozen models, files, cancellation, errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nodeflow_nodes.sd.train import TrainLora, TrainTextualInversion
from PIL import Image
from safetensors import safe_open

from nodeflow import testing
from nodeflow.context import CancelToken
from nodeflow.errors import Cancelled
from nodeflow.files import PathResolver
from nodeflow.graph import parse_graph
from nodeflow.models.lora import merge_lora, read_lora
from nodeflow.models.textual_inversion import EmbeddingError, read_embedding
from nodeflow.node import Context
from nodeflow.training import dataset as datasets
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

TOKEN, INITIALIZER = "<tiny-thing>", "cat"
CAPTION = "a photo of {token}\n{token}"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD folder no other test uses: 24-wide text, 2-level VAE (factor 2), UNet sample size 4: 8 px images."""
    parts = {
        "unet": testing.unet((32, 32), (True, False), cross_attention_dim=24, sample_size=4, seed=11),
        "vae": testing.vae((32, 32), sample_size=8, seed=12),
        "text_encoder": testing.text_encoder(testing.clip_config(24, 2, intermediate=48), seed=13),
    }
    return testing.save_sd_folder(tmp_path_factory.mktemp("train_sd") / "model", parts)


@pytest.fixture(scope="module")
def parts(tiny_dir: Path, sd_models):
    return sd_models.load_sd(tiny_dir)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("set")
    rng = np.random.default_rng(0)
    for i in range(5):
        array = np.zeros((8, 8, 3), np.uint8)
        array[rng.integers(0, 4) : rng.integers(5, 8), 2 + i % 4] = 255
        Image.fromarray(array).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def data(images_dir: Path):
    return datasets.load(images_dir, CAPTION)


@pytest.fixture(scope="module")
def prior_data(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("prior")
    for i in range(3):
        array = np.full((8, 8, 3), 40 * i, np.uint8)
        Image.fromarray(array).save(folder / f"p{i}.png")
        (folder / f"p{i}.txt").write_text(f"a photo of thing {i}")
    return datasets.load(folder, "")


def _ctx(node_type: str, out: Path, events: list | None = None, cancel: CancelToken | None = None) -> Context:
    return Context("train", node_type, output_dir=out, emit=None if events is None else events.append, cancel=cancel)


def _ti(parts, data, out: Path, *, steps: int = 4, seed: int = 0, events: list | None = None, cancel=None, **options):
    settings = {"token": TOKEN, "initializer": INITIALIZER, "vectors": 1, "steps": steps, "learning_rate": 0.02, "batch_size": 3,
                "seed": seed, "save_every": 2, "sample_every": 0, "sample_prompt": "", "name": "", **options}
    return TrainTextualInversion().run(_ctx("sd.train_textual_inversion", out, events, cancel), tokenizer=parts.tokenizer,
                                       text_encoder=parts.text_encoder, unet=parts.unet, vae=parts.vae,
                                       scheduler_config=parts.scheduler_config, dataset=data, **settings)


def _lora(parts, data, out: Path, *, steps: int = 3, seed: int = 0, events: list | None = None, **options):
    settings = {"prior_weight": 1.0, "token": "sks", "rank": 2, "alpha": 0.0, "train_text_encoder": False, "steps": steps,
                "learning_rate": 0.01, "batch_size": 2, "seed": seed, "save_every": 0, "sample_every": 0, "sample_prompt": "",
                "name": "", **options}
    return TrainLora().run(_ctx("sd.train_lora", out, events), tokenizer=parts.tokenizer, text_encoder=parts.text_encoder,
                           unet=parts.unet, vae=parts.vae, scheduler_config=parts.scheduler_config, dataset=data, **settings)


def _losses(events: list) -> list[float]:
    return [e.data["loss"] for e in events if e.type == "progress"]


def _snapshot(*modules) -> list[tuple[torch.Tensor, int]]:
    return [(t.detach().clone(), t._version) for m in modules for t in [*m.parameters(), *m.buffers()]]


def _unchanged(before: list[tuple[torch.Tensor, int]], *modules) -> bool:
    after = [t for m in modules for t in [*m.parameters(), *m.buffers()]]
    return len(after) == len(before) and all(torch.equal(t, b) and t._version == v for t, (b, v) in zip(after, before, strict=True))


# -------------------------------------------------------------------- reference loops in diffusers' examples style


class _Draws:
    """The documented draw order of nodeflow.training.objective, written out again for the references."""

    def __init__(self, count: int, generator: torch.Generator):
        self.count, self.generator, self.order = count, generator, torch.empty(0, dtype=torch.long)

    def batch(self, size: int, captions: list[tuple[str, ...]]) -> tuple[torch.Tensor, list[str]]:
        taken = []
        while sum(len(t) for t in taken) < size:
            if len(self.order) == 0:
                self.order = torch.randperm(self.count, generator=self.generator)
            need = size - sum(len(t) for t in taken)
            taken.append(self.order[:need])
            self.order = self.order[need:]
        index = torch.cat(taken)
        pick = torch.rand(size, generator=self.generator)
        return index, [captions[i][min(int(u * len(captions[i])), len(captions[i]) - 1)] for i, u in zip(index.tolist(), pick.tolist(), strict=True)]


def _denoising_loss(parts, schedule, unet, text_encoder, tokenizer, pixels, texts, generator, prior: bool = False):
    latents = parts.vae.encode(pixels).latent_dist.sample(generator) * parts.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, schedule.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    prediction = unet(schedule.add_noise(latents, noise, timesteps), timesteps, text_encoder(ids)[0]).sample
    if not prior:
        return F.mse_loss(prediction.float(), noise.float(), reduction="mean")
    (pred, pred_prior), (target, target_prior) = prediction.chunk(2), noise.chunk(2)
    return F.mse_loss(pred.float(), target.float(), reduction="mean") + F.mse_loss(pred_prior.float(), target_prior.float(), reduction="mean")


def _reference_textual_inversion(parts, data, steps: int, seed: int) -> tuple[list[float], torch.Tensor]:
    """examples/textual_inversion/textual_inversion.py's loop: the whole embedding matrix in AdamW, other rows restored."""
    from diffusers import DDPMScheduler

    tokenizer = copy.deepcopy(parts.tokenizer)
    tokenizer.add_tokens([TOKEN])
    token_id = tokenizer.convert_tokens_to_ids(TOKEN)
    text_encoder = copy.deepcopy(parts.text_encoder)
    text_encoder.resize_token_embeddings(len(tokenizer))
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = weight[tokenizer.encode(INITIALIZER, add_special_tokens=False)[0]]
    original = weight.detach().clone()
    text_encoder.requires_grad_(False)
    weight.requires_grad_(True)
    text_encoder.train()
    optimizer = torch.optim.AdamW(text_encoder.get_input_embeddings().parameters(), lr=0.02, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    schedule = DDPMScheduler.from_config(parts.scheduler_config)
    generator = torch.Generator().manual_seed(seed)
    pixels, captions = datasets.pixels(data, 8), datasets.captions(data, TOKEN)
    draws, losses = _Draws(len(pixels), generator), []
    keep = torch.ones(len(tokenizer), dtype=torch.bool)
    keep[token_id] = False
    for _ in range(steps):
        index, texts = draws.batch(3, captions)
        loss = _denoising_loss(parts, schedule, parts.unet, text_encoder, tokenizer, pixels[index], texts, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            weight[keep] = original[keep]
        losses.append(loss.item())
    return losses, weight[token_id].detach().clone()


# ------------------------------------------------------------------------------------------- textual inversion


def test_textual_inversion_losses_and_vector_equal_diffusers_style_reference_loop(parts, data, tmp_path):
    events: list = []
    result = _ti(parts, data, tmp_path, steps=4, seed=5, events=events)
    losses, vector = _reference_textual_inversion(parts, data, steps=4, seed=5)
    assert _losses(events) == losses
    assert torch.equal(result["embedding"].vectors[0], vector)


def test_textual_inversion_is_deterministic_for_a_seed(parts, data, tmp_path):
    first, second = [], []
    a = _ti(parts, data, tmp_path / "a", seed=3, events=first)
    b = _ti(parts, data, tmp_path / "b", seed=3, events=second)
    c = _ti(parts, data, tmp_path / "c", seed=4)
    assert _losses(first) == _losses(second) and torch.equal(a["embedding"].vectors, b["embedding"].vectors)
    assert not torch.equal(a["embedding"].vectors, c["embedding"].vectors)


def test_textual_inversion_trains_only_the_token_vectors_and_leaves_the_model_alone(parts, data, tmp_path):
    before = _snapshot(parts.text_encoder, parts.unet, parts.vae)
    vocabulary = len(parts.tokenizer)
    result = _ti(parts, data, tmp_path)
    assert _unchanged(before, parts.text_encoder, parts.unet, parts.vae)
    assert len(parts.tokenizer) == vocabulary and TOKEN not in parts.tokenizer.get_vocab()
    start = parts.text_encoder.get_input_embeddings().weight[parts.tokenizer.encode(INITIALIZER, add_special_tokens=False)[0]]
    assert result["embedding"].token == TOKEN and not torch.equal(result["embedding"].vectors[0], start)
    assert math.isfinite(result["loss"])


def test_textual_inversion_file_is_diffusers_layout_and_reads_back_as_the_output(parts, data, tmp_path):
    result = _ti(parts, data, tmp_path, steps=3)
    path = tmp_path / "tiny-thing.safetensors"
    with safe_open(str(path), "pt") as file:
        assert list(file.keys()) == [TOKEN] and file.metadata()["nodeflow_step"] == "3"
    read = read_embedding(path)
    assert read.token == TOKEN and torch.equal(read.vectors, result["embedding"].vectors)


def test_multi_vector_tokens_train_each_vector(parts, data, tmp_path):
    result = _ti(parts, data, tmp_path, vectors=3)
    vectors = result["embedding"].vectors
    assert vectors.shape == (3, 24) and not torch.equal(vectors[0], vectors[1])


def test_progress_carries_the_loss_every_step_and_samples_arrive_as_previews(parts, data, tmp_path):
    events: list = []
    _ti(parts, data, tmp_path, steps=4, events=events, sample_every=2)
    progress = [e for e in events if e.type == "progress"]
    assert [(e.data["value"], e.data["max"]) for e in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(isinstance(e.data["loss"], float) for e in progress)
    previews = [e.data["image"] for e in events if e.type == "preview"]
    assert len(previews) == 2 and previews[0].size == (8, 8)
    outputs = [e.data for e in events if e.type == "output"]
    assert [(Path(o["path"]).name, o["kind"]) for o in outputs] == [("tiny-thing.safetensors", "embedding")]


def test_cancelling_keeps_the_checkpoint_of_the_last_save(parts, data, tmp_path):
    cancel = CancelToken()
    events: list = []

    def emit(event):
        events.append(event)
        if event.type == "progress" and event.data["value"] == 3:
            cancel.cancel()  # after step 3; the last save was after step 2

    ctx = Context("train", "sd.train_textual_inversion", output_dir=tmp_path / "cancelled", emit=emit, cancel=cancel)
    with pytest.raises(Cancelled):
        TrainTextualInversion().run(ctx, tokenizer=parts.tokenizer, text_encoder=parts.text_encoder, unet=parts.unet, vae=parts.vae,
                                    scheduler_config=parts.scheduler_config, dataset=data, token=TOKEN, initializer=INITIALIZER,
                                    vectors=1, steps=6, learning_rate=0.02, batch_size=3, seed=0, save_every=2, sample_every=0,
                                    sample_prompt="", name="")
    two_steps = _ti(parts, data, tmp_path / "two", steps=2, seed=0)
    kept = tmp_path / "cancelled" / "tiny-thing.safetensors"
    with safe_open(str(kept), "pt") as file:
        assert file.metadata()["nodeflow_step"] == "2"
    assert torch.equal(read_embedding(kept).vectors, two_steps["embedding"].vectors)
    assert not list((tmp_path / "cancelled").glob(".*partial"))


def test_an_initializer_of_several_tokens_fails_before_any_step(parts, data, tmp_path):
    events: list = []
    with pytest.raises(EmbeddingError, match="tokens for this tokenizer"):
        _ti(parts, data, tmp_path, initializer="handwritingly", events=events)
    assert events == [] and not list(tmp_path.glob("*.safetensors"))


# ------------------------------------------------------------------------------------------------------- LoRA


def _reference_lora(parts, data, prior, steps: int, seed: int):
    """examples/dreambooth/train_dreambooth_lora.py's loop with peft, prior preservation on; lora_A drawn from the seed's generator."""
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLinear

    unet = copy.deepcopy(parts.unet)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    layers = [m for m in unet.modules() if isinstance(m, PeftLinear)]
    with torch.no_grad():
        for layer in layers:
            layer.lora_A["default"].weight.copy_(torch.randn(layer.lora_A["default"].weight.shape, generator=generator) / 2)
    unet.train()
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=0.01, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    schedule = DDPMScheduler.from_config(parts.scheduler_config)
    pixels, captions = datasets.pixels(data, 8), datasets.captions(data, "sks")
    prior_pixels, prior_captions = datasets.pixels(prior, 8), datasets.captions(prior, "sks")
    draws, prior_draws, losses = _Draws(len(pixels), generator), _Draws(len(prior_pixels), generator), []
    for _ in range(steps):
        index, texts = draws.batch(2, captions)
        prior_index, prior_texts = prior_draws.batch(2, prior_captions)
        batch = torch.cat([pixels[index], prior_pixels[prior_index]])
        loss = _denoising_loss(parts, schedule, unet, parts.text_encoder, parts.tokenizer, batch, texts + prior_texts, generator, prior=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, layers


def test_lora_losses_and_weights_equal_peft_dreambooth_reference_loop(parts, data, prior_data, tmp_path):
    pytest.importorskip("peft")
    events: list = []
    result = _lora(parts, data, tmp_path, steps=3, seed=2, events=events, prior=prior_data)
    losses, layers = _reference_lora(parts, data, prior_data, steps=3, seed=2)
    assert _losses(events) == losses
    assert len(result["lora"].unet) == len(layers) > 0
    for (name, layer), peft_layer in zip(result["lora"].unet.items(), layers, strict=True):
        assert torch.equal(layer.down, peft_layer.lora_A["default"].weight), name
        assert torch.equal(layer.up, peft_layer.lora_B["default"].weight), name


def test_lora_is_deterministic_for_a_seed(parts, data, tmp_path):
    a, b, c = (_lora(parts, data, tmp_path / n, seed=s)["lora"] for n, s in (("a", 1), ("b", 1), ("c", 2)))
    assert all(torch.equal(a.unet[k].up, b.unet[k].up) and torch.equal(a.unet[k].down, b.unet[k].down) for k in a.unet)
    assert not all(torch.equal(a.unet[k].up, c.unet[k].up) for k in a.unet)


def test_lora_leaves_the_model_alone_and_changes_only_attention_projections_when_merged(parts, data, tmp_path):
    before = _snapshot(parts.text_encoder, parts.unet, parts.vae)
    lora = _lora(parts, data, tmp_path, train_text_encoder=True)["lora"]
    assert _unchanged(before, parts.text_encoder, parts.unet, parts.vae)
    assert lora.text_encoder and all(k.endswith(("q_proj", "k_proj", "v_proj", "out_proj")) for k in lora.text_encoder)
    merged = merge_lora(parts.unet, lora.unet, 1.0)
    base, new = parts.unet.state_dict(), merged.state_dict()
    changed = {k for k in base if not torch.equal(base[k], new[k])}
    assert changed and changed <= {f"{k}.weight" for k in lora.unet}
    assert all(k.rsplit(".", 1)[0].endswith(("to_q", "to_k", "to_v", "to_out.0")) for k in changed)


def test_lora_file_is_kohya_layout_and_reads_back_as_the_output(parts, data, tmp_path):
    lora = _lora(parts, data, tmp_path, train_text_encoder=True, name="mine", alpha=4.0)["lora"]
    path = tmp_path / "mine.safetensors"
    with safe_open(str(path), "pt") as file:
        keys = set(file.keys())
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn") for k in keys)
    read = read_lora(path)
    for part in ("unet", "text_encoder"):
        mine, theirs = getattr(lora, part), getattr(read, part)
        assert len(mine) == len(theirs)
        for name, layer in mine.items():
            other = theirs[("text_model." + name if part == "text_encoder" else name).replace(".", "_")]
            assert torch.equal(layer.down, other.down) and torch.equal(layer.up, other.up) and other.alpha == 4.0, name
    sample = torch.randn(1, 4, 4, 4)
    text = torch.randn(1, 77, 24)
    with torch.no_grad():
        assert torch.equal(merge_lora(parts.unet, lora.unet, 1.0)(sample, 10, text).sample,
                           merge_lora(parts.unet, read.unet, 1.0)(sample, 10, text).sample)


# -------------------------------------------------------------------------------------------- validation errors


def _training_graph(folder: str, node: str, **inputs) -> object:
    parts = {k: {"node": "load", "output": k} for k in ("tokenizer", "text_encoder", "unet", "vae", "scheduler_config")}
    return parse_graph({"nodes": {
        "load": {"type": "sd.load_model", "inputs": {}},
        "data": {"type": "sd.dataset", "inputs": {"folder": folder, "caption": inputs.pop("caption", CAPTION)}},
        "train": {"type": node, "inputs": {**parts, "dataset": {"node": "data", "output": "dataset"}, **inputs}},
    }})


@pytest.mark.parametrize(("node", "inputs", "field", "words"), [
    ("sd.train_textual_inversion", {"token": "cat", "initializer": "dog"}, "token", "already in the CLIP vocabulary"),
    ("sd.train_textual_inversion", {"token": "two words", "initializer": "dog"}, "token", "spaces"),
    ("sd.train_textual_inversion", {"token": TOKEN, "initializer": ""}, "initializer", "give an initializer"),
    ("sd.train_textual_inversion", {"token": TOKEN, "initializer": "dog", "learning_rate": float("nan")}, "learning_rate", "nan is outside"),
    ("sd.train_textual_inversion", {"token": TOKEN, "initializer": "dog", "learning_rate": 0.0}, "learning_rate", "trains nothing"),
    ("sd.train_textual_inversion", {"token": TOKEN, "initializer": "dog", "caption": "a photo"}, "dataset", "names neither"),
    ("sd.train_lora", {"rank": 0}, "rank", "outside the allowed range"),
    ("sd.train_lora", {"token": "", "caption": "a {token}"}, "token", "give a token"),
    ("sd.train_lora", {"learning_rate": float("inf")}, "learning_rate", "inf is outside"),
])
def test_bad_training_inputs_are_validation_errors_naming_node_and_field(sd_registry, images_dir, node, inputs, field, words):
    graph = _training_graph(images_dir.name, node, **inputs)
    errors = validate(graph, sd_registry, PathResolver.create([images_dir.parent]))
    assert [(e.node, e.input) for e in errors] == [("train", field)], errors
    assert words in errors[0].message


def test_a_template_no_image_uses_is_not_held_against_the_token(sd_registry, tmp_path):
    folder = tmp_path / "captioned"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    (folder / "a.txt").write_text("a photo of {token}")
    graph = _training_graph("captioned", "sd.train_textual_inversion", token=TOKEN, initializer="dog", caption="unused")
    assert validate(graph, sd_registry, PathResolver.create([tmp_path])) == []


def test_a_dataset_without_images_is_a_validation_error_before_training(sd_registry, tmp_path):
    (tmp_path / "none").mkdir()
    graph = _training_graph("none", "sd.train_lora")
    errors = validate(graph, sd_registry, PathResolver.create([tmp_path]))
    assert [(e.node, e.input) for e in errors] == [("data", "folder")] and "holds no images" in errors[0].message
