"""SDXL textual-inversion files (clip_l / clip_g): one token taught to both tokenizer/encoder pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_families import XL_TEXT_G, XL_TEXT_L, tiny_sdxl, tokenizer
from safetensors.torch import save_file

from nodeflow.models.textual_inversion import EmbeddingError, add_embeddings, read_embedding, read_embeddings

TOKEN = "xl-style"
PROMPT = "a photo in xl-style xl-style_1"  # a 2-vector embedding spelled out, as diffusers' prompts expand it


@pytest.fixture(scope="module")
def vectors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    return {"clip_l": torch.randn(2, XL_TEXT_L, generator=gen), "clip_g": torch.randn(2, XL_TEXT_G, generator=gen)}


@pytest.fixture(scope="module")
def sdxl_file(tmp_path_factory: pytest.TempPathFactory, vectors: dict) -> Path:
    path = tmp_path_factory.mktemp("ti_sdxl") / f"{TOKEN}.safetensors"
    save_file(vectors, str(path))
    return path


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple]:
    parts = tiny_sdxl(seed=9)
    return {"text_encoder": (tokenizer(), parts["text_encoder"]), "text_encoder_2": (tokenizer("!"), parts["text_encoder_2"])}


@pytest.fixture(scope="module")
def added(sdxl_file: Path, pairs: dict) -> dict[str, tuple]:
    return add_embeddings(pairs, read_embeddings(sdxl_file))


def test_sdxl_file_reads_as_one_embedding_per_encoder_named_after_the_file(sdxl_file: Path, vectors: dict) -> None:
    found = read_embeddings(sdxl_file)
    assert found.keys() == {"text_encoder", "text_encoder_2"} and {e.token for e in found.values()} == {TOKEN}
    assert torch.equal(found["text_encoder"].vectors, vectors["clip_l"]) and torch.equal(found["text_encoder_2"].vectors, vectors["clip_g"])


def test_each_encoder_gets_its_own_vectors_under_the_same_token_ids(added: dict, vectors: dict) -> None:
    ids = {slot: tok.convert_tokens_to_ids([TOKEN, f"{TOKEN}_1"]) for slot, (tok, _) in added.items()}
    assert ids["text_encoder"] == ids["text_encoder_2"] == [49408, 49409]
    rows_l = added["text_encoder"][1].get_input_embeddings().weight[49408:49410]
    rows_g = added["text_encoder_2"][1].get_input_embeddings().weight[49408:49410]
    assert torch.equal(rows_l, vectors["clip_l"]) and torch.equal(rows_g, vectors["clip_g"])


def test_adding_leaves_the_base_pairs_untouched(added: dict, pairs: dict) -> None:
    for tok, encoder in pairs.values():
        assert TOKEN not in tok.get_vocab() and encoder.get_input_embeddings().num_embeddings == 49408


def test_encoders_encode_the_token_as_diffusers_sdxl_pipeline_does(added: dict, vectors: dict) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    fresh = tiny_sdxl(seed=9)  # diffusers resizes in place: give it its own copy of the same weights
    pipe = StableDiffusionXLPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], text_encoder_2=fresh["text_encoder_2"], tokenizer=tokenizer(),
        tokenizer_2=tokenizer("!"), unet=fresh["unet"], scheduler=EulerDiscreteScheduler(), add_watermarker=False,
    )
    # The documented way to load an SDXL embedding into diffusers: one call per encoder.
    pipe.load_textual_inversion(vectors["clip_l"], token=TOKEN, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(vectors["clip_g"], token=TOKEN, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    ours = added
    theirs = {"text_encoder": (pipe.tokenizer, pipe.text_encoder), "text_encoder_2": (pipe.tokenizer_2, pipe.text_encoder_2)}
    for slot in ours:
        ids = ours[slot][0](PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids
        assert torch.equal(ids, theirs[slot][0](PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids)
        with torch.no_grad():
            a = ours[slot][1](ids, output_hidden_states=True)
            b = theirs[slot][1](ids, output_hidden_states=True)
        assert torch.equal(a.hidden_states[-2], b.hidden_states[-2]) and torch.equal(a[0], b[0])


def test_the_refiner_takes_the_clip_g_half(sdxl_file: Path, pairs: dict, vectors: dict) -> None:
    added = add_embeddings({"text_encoder_2": pairs["text_encoder_2"]}, read_embeddings(sdxl_file))
    assert torch.equal(added["text_encoder_2"][1].get_input_embeddings().weight[49408:49410], vectors["clip_g"])


def test_an_sd1_embedding_cannot_teach_sdxl_second_encoder(tmp_path: Path, pairs: dict) -> None:
    path = tmp_path / "sd1.safetensors"
    save_file({"emb_params": torch.zeros(1, XL_TEXT_L)}, str(path))
    with pytest.raises(EmbeddingError, match="no vectors for text_encoder_2"):
        add_embeddings(pairs, read_embeddings(path))


def test_reading_an_sdxl_file_as_a_single_embedding_points_to_read_embeddings(sdxl_file: Path) -> None:
    with pytest.raises(EmbeddingError, match="SDXL embedding.*read_embeddings"):
        read_embedding(sdxl_file)
