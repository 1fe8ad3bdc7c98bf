"""Textual inversion: a new token, its vector from the file, new tokenizer and encoder objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import png_pixels, run_graph
from diffusers import StableDiffusionPipeline
from models_tiny import TEXT_HIDDEN, clip_tokenizer, tiny_text_encoder
from nodeflow_nodes.sd.text import Tokenize
from nodeflow_nodes.sd.textual_inversion import TextualInversion
from safetensors.torch import save_file

from nodeflow.models import DEFAULT_MODEL, ModelStore
from nodeflow.models.single_file import PickleRefused
from nodeflow.models.textual_inversion import EmbeddingError, add_embedding, read_embedding
from nodeflow.node import Context
from nodeflow.values import Embedding
from tools.demo import make_embedding

BASE_VOCAB = 49408


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def text_encoder():
    return tiny_text_encoder()


@pytest.fixture(scope="module")
def vector() -> torch.Tensor:
    return torch.randn(1, TEXT_HIDDEN, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def diffusers_file(tmp_path_factory: pytest.TempPathFactory, vector: torch.Tensor) -> Path:
    path = tmp_path_factory.mktemp("ti") / "learned_embeds.safetensors"
    save_file({"<cat-toy>": vector[0]}, str(path))
    return path


def _run_node(store, tokenizer, text_encoder, path: Path, token: str = "") -> dict:
    ctx = Context(node_id="1", node_type="sd.textual_inversion", model_store=store)
    return TextualInversion().run(ctx, tokenizer=tokenizer, text_encoder=text_encoder, embedding=str(path), token=token)


def test_diffusers_file_gives_its_key_as_token_and_its_vector(diffusers_file: Path, vector: torch.Tensor) -> None:
    embedding = read_embedding(diffusers_file)
    assert embedding.token == "<cat-toy>" and torch.equal(embedding.vectors, vector)


def test_a1111_safetensors_file_takes_its_token_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "style-x.safetensors"
    save_file({"emb_params": torch.ones(2, TEXT_HIDDEN)}, str(path))
    embedding = read_embedding(path)
    assert embedding.token == "style-x" and embedding.vectors.shape == (2, TEXT_HIDDEN)


def test_a1111_pickle_file_loads_with_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"string_to_param": {"*": torch.ones(1, TEXT_HIDDEN)}, "name": "old", "step": 3000}, str(path))
    assert read_embedding(path, allow_pickle=True).vectors.shape == (1, TEXT_HIDDEN)


def test_a1111_pickle_file_is_refused_without_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    torch.save({"string_to_param": {"*": torch.ones(1, TEXT_HIDDEN)}}, str(path))
    with pytest.raises(PickleRefused, match="old.bin"):
        read_embedding(path)


def test_token_input_overrides_the_file_token(diffusers_file: Path) -> None:
    assert read_embedding(diffusers_file, token="<my-toy>").token == "<my-toy>"


def test_added_token_gets_an_id_beyond_the_base_vocabulary(tokenizer, text_encoder, vector) -> None:
    new_tokenizer, _ = add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    assert new_tokenizer("a <cat-toy> photo").input_ids == [49406, 320, BASE_VOCAB, 1125, 49407]


def test_added_token_embedding_row_equals_the_file_vector(tokenizer, text_encoder, vector) -> None:
    _, new_encoder = add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    assert torch.equal(new_encoder.get_input_embeddings().weight[BASE_VOCAB], vector[0])


def test_base_rows_of_the_new_embedding_equal_the_old_ones(tokenizer, text_encoder, vector) -> None:
    _, new_encoder = add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    assert torch.equal(new_encoder.get_input_embeddings().weight[:BASE_VOCAB], text_encoder.get_input_embeddings().weight)


def test_base_tokenizer_and_encoder_are_unchanged(tokenizer, text_encoder, vector) -> None:
    weight_before = text_encoder.get_input_embeddings().weight.clone()
    add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    assert len(tokenizer) == BASE_VOCAB and "<cat-toy>" not in tokenizer.get_vocab()
    assert text_encoder.config.vocab_size == BASE_VOCAB
    assert torch.equal(text_encoder.get_input_embeddings().weight, weight_before)


def test_new_encoder_shares_the_transformer_weights_with_the_base(tokenizer, text_encoder, vector) -> None:
    _, new_encoder = add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    assert new_encoder is not text_encoder
    assert new_encoder.encoder.layers[0].mlp.fc1.weight is text_encoder.encoder.layers[0].mlp.fc1.weight


def test_prompt_without_the_token_encodes_as_with_the_base(tokenizer, text_encoder, vector) -> None:
    new_tokenizer, new_encoder = add_embedding(tokenizer, text_encoder, Embedding("<cat-toy>", vector))
    ids = torch.tensor([tokenizer("a photo of a cat").input_ids])
    with torch.no_grad():
        assert torch.equal(new_encoder(ids)[0], text_encoder(ids)[0])


def test_multi_vector_embedding_adds_numbered_tokens_expanded_by_the_tokenize_node(tokenizer, text_encoder) -> None:
    vectors = torch.randn(3, TEXT_HIDDEN)
    new_tokenizer, new_encoder = add_embedding(tokenizer, text_encoder, Embedding("<trio>", vectors))
    tokens = Tokenize().run(Context(node_id="1", node_type="sd.tokenize"), tokenizer=new_tokenizer, text="a <trio> b")
    assert tokens.ids[0, :6].tolist() == [49406, 320, BASE_VOCAB, BASE_VOCAB + 1, BASE_VOCAB + 2, 321]
    assert torch.equal(new_encoder.get_input_embeddings().weight[BASE_VOCAB:], vectors)


def test_embedding_of_the_wrong_width_is_refused(tokenizer, text_encoder) -> None:
    with pytest.raises(EmbeddingError, match="1024-wide vectors, the text encoder expects 48"):
        add_embedding(tokenizer, text_encoder, Embedding("<sd2>", torch.zeros(1, 1024)))


def test_token_already_in_the_vocabulary_is_refused(tokenizer, text_encoder, vector) -> None:
    with pytest.raises(EmbeddingError, match="'cat</w>' is already"):
        add_embedding(tokenizer, text_encoder, Embedding("cat</w>", vector))


def test_node_builds_once_for_two_runs(tokenizer, text_encoder, diffusers_file: Path) -> None:
    store = ModelStore(device="cpu")
    first = _run_node(store, tokenizer, text_encoder, diffusers_file)
    second = _run_node(store, tokenizer, text_encoder, diffusers_file)
    assert first["ti_text_encoder"] is second["ti_text_encoder"]
    assert first["ti_tokenizer"] is second["ti_tokenizer"]


def test_node_output_knows_the_token(tokenizer, text_encoder, diffusers_file: Path) -> None:
    out = _run_node(ModelStore(device="cpu"), tokenizer, text_encoder, diffusers_file, token="<toy>")
    assert out["ti_tokenizer"].convert_tokens_to_ids("<toy>") == BASE_VOCAB


def test_textual_inversion_workflow_pixels_equal_pipeline_with_load_textual_inversion(tiny_sd_dir, tmp_path, capsys) -> None:
    # A 3-vector embedding on the conftest's tiny model (32-wide text encoder), run through
    # the shipped workflow with the CLI, against diffusers' own loader and pipeline.
    embedding = tmp_path / "trio.safetensors"
    save_file({"<trio>": torch.randn(3, 32, generator=torch.Generator().manual_seed(3))}, str(embedding))
    prompt, negative, seed = "a <trio> on a table", "blurry", 99
    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_sd_dir), local_files_only=True, safety_checker=None, requires_safety_checker=False, low_cpu_mem_usage=False
    )
    pipe.load_textual_inversion(str(embedding))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt, negative_prompt=negative, num_inference_steps=3, guidance_scale=7.0, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]

    workflow = Path(__file__).resolve().parent.parent / "workflows" / "textual_inversion.json"
    values = {"model": tiny_sd_dir, "embedding": embedding, "prompt": prompt, "negative_prompt": negative, "seed": seed,
              "steps": 3, "guidance_scale": 7.0, "width": 64, "height": 64, "scheduler": "PNDMScheduler"}
    report = run_graph(workflow, tmp_path / "out", capsys, **values)
    assert np.array_equal(png_pixels(report["outputs"][0]), np.array(expected))


@pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").is_file(), reason="the embedded default model is not built")
def test_shipped_digit_eight_embedding_is_the_mean_of_eight_and_8_in_the_default_model() -> None:
    # Fails when the default model is retrained without rerunning tools/demo/make_embedding.py.
    parts = ModelStore(device="cpu").load_sd("default")
    shipped = read_embedding(make_embedding.OUT)
    assert shipped.token == make_embedding.TOKEN
    assert torch.equal(shipped.vectors, make_embedding.mean_embedding(parts.tokenizer, parts.text_encoder))
