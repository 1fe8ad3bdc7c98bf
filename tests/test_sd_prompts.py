"""Prompt weights, embeddings, long prompts and BREAK through Tokenize and Text Encode, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import png_pixels, run_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodeflow_nodes.sd.text import TextEncode, Tokenize
from nodeflow_nodes.sd.textual_inversion import TextualInversion
from safetensors.torch import save_file

from nodeflow.files import PathResolver
from nodeflow.graph import load_graph
from nodeflow.node import Context
from nodeflow.validate import validate
from nodeflow.values import match_lengths

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
START, END = 49406, 49407
WIDTH = 32  # the tiny text encoder's hidden size


def ctx(paths: PathResolver | None = None, store: object = None) -> Context:
    return Context("n", "sd.tokenize", model_store=store, paths=paths or PathResolver())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sd(tiny_sd_dir, sd_models):  # type: ignore[no-untyped-def]
    return sd_models.load_sd(str(tiny_sd_dir))


def encode(sd, text: str, paths: PathResolver | None = None, encoder=None, tokenizer=None, **options) -> torch.Tensor:  # type: ignore[no-untyped-def]
    tokens = Tokenize().run(ctx(paths), tokenizer or sd.tokenizer, text, **options)
    return TextEncode().run(ctx(), encoder or sd.text_encoder, tokens, 1).embeddings


@pytest.fixture
def embeddings_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    torch.manual_seed(3)
    save_file({"emb_params": torch.randn(2, WIDTH)}, str(folder / "toy.safetensors"))
    save_file({"emb_params": torch.randn(1, 48)}, str(folder / "wide.safetensors"))
    return folder


# -- plain prompts: exactly as before ---------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a", "red", "cube,", "photo", "of", "astronaut", "4k", "!", "café", "\n"]), max_size=70).map(" ".join))
def test_a_plain_prompt_tokenizes_exactly_as_the_tokenizer_pads_it(sd, text):
    expected = sd.tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    tokens = Tokenize().run(ctx(), sd.tokenizer, text)
    assert torch.equal(tokens.ids, expected.input_ids) and torch.equal(tokens.attention_mask, expected.attention_mask)
    assert (tokens.chunks, tokens.weights, tokens.vectors) == (1, None, None)


def test_weights_of_one_encode_exactly_like_the_plain_prompt(sd, sd_reference):
    theirs, _ = sd_reference("DDIMScheduler").encode_prompt("a red cube", "cpu", 1, False)
    assert torch.equal(encode(sd, "a (red:1.0) cube"), theirs)
    assert torch.equal(encode(sd, "a red cube"), theirs)


# -- weights ---------------------------------------------------------------------------------------
def test_tokens_carry_the_weight_of_each_token(sd):
    tokens = Tokenize().run(ctx(), sd.tokenizer, "[a] ((red)) (cube:1.5) b")
    assert tokens.weights is not None
    assert tokens.weights[0, :6].tolist() == pytest.approx([1.0, 1 / 1.1, 1.21, 1.5, 1.0, 1.0])
    assert tokens.ids[0, :6].tolist() == Tokenize().run(ctx(), sd.tokenizer, "a red cube b").ids[0, :6].tolist()
    assert tokens.empty is not None and tokens.empty[0, :3].tolist() == [START, END, END]


def test_a_weighted_token_moves_away_from_the_empty_prompt_encoding_by_its_weight(sd):
    plain = encode(sd, "a red cube")
    weighted = encode(sd, "a (red:1.5) cube")
    z_empty = encode(sd, "")
    expected = (plain[0, 2] - z_empty[0, 2]) * 1.5 + z_empty[0, 2]
    assert torch.equal(weighted[0, 2], expected)
    others = [i for i in range(77) if i != 2]
    assert torch.equal(weighted[0, others], plain[0, others])


def test_a_weight_below_one_moves_towards_the_empty_prompt(sd):
    plain, z_empty = encode(sd, "a red cube"), encode(sd, "")
    weighted = encode(sd, "a [red] cube")
    assert (weighted[0, 2] - z_empty[0, 2]).norm() < (plain[0, 2] - z_empty[0, 2]).norm()


# -- long prompts and BREAK -----------------------------------------------------------------------
WORDS = ["red", "green", "blue", "cat", "dog", "tree", "house", "sky", "sun", "moon"]  # one CLIP token each
LONG = " ".join(WORDS[i % 10] for i in range(150))  # 150 tokens: two full chunks


@pytest.mark.parametrize("count", [75, 76, 150, 160])
def test_a_long_prompt_is_cut_into_chunks_each_wrapped_and_padded_to_77(sd, count):
    text = " ".join(WORDS[i % 10] for i in range(count))
    body = sd.tokenizer(text, add_special_tokens=False).input_ids
    assert len(body) == count
    tokens = Tokenize().run(ctx(), sd.tokenizer, text)
    assert tokens.chunks == -(-count // 75) and tokens.ids.shape == (1, 77 * tokens.chunks)
    ids = tokens.ids[0].tolist()
    for k in range(tokens.chunks):
        part = body[75 * k : 75 * (k + 1)]
        assert ids[77 * k : 77 * (k + 1)] == [START, *part, END] + [END] * (75 - len(part))
    assert tokens.attention_mask.sum().item() == count + 2 * tokens.chunks
    assert tokens.truncated == ("",)


def test_each_chunk_encodes_as_its_own_77_tokens(sd):
    tokens = Tokenize().run(ctx(), sd.tokenizer, LONG)
    embeddings = TextEncode().run(ctx(), sd.text_encoder, tokens, 1).embeddings
    assert embeddings.shape == (1, 77 * tokens.chunks, WIDTH)
    with torch.no_grad():
        second_alone = sd.text_encoder(tokens.ids[:, 77:154])[0]
    torch.testing.assert_close(embeddings[:, 77:154], second_alone, rtol=0, atol=1e-6)


def test_truncate_cuts_a_long_prompt_like_diffusers(sd, sd_reference):
    theirs, _ = sd_reference("DDIMScheduler").encode_prompt(LONG, "cpu", 1, False)
    tokens = Tokenize().run(ctx(), sd.tokenizer, LONG, truncate=True)
    assert tokens.chunks == 1 and tokens.truncated[0].split() == LONG.split()[75:]
    assert torch.equal(TextEncode().run(ctx(), sd.text_encoder, tokens, 1).embeddings, theirs)


def test_break_starts_a_new_chunk(sd):
    tokens = Tokenize().run(ctx(), sd.tokenizer, "a cat BREAK a dog")
    a, cat, dog = sd.tokenizer("a cat dog", add_special_tokens=False).input_ids
    assert tokens.chunks == 2
    assert tokens.ids[0, :4].tolist() == [START, a, cat, END]
    assert tokens.ids[0, 77:81].tolist() == [START, a, dog, END]


def test_breaks_without_text_between_them_make_no_empty_chunks(sd):
    assert Tokenize().run(ctx(), sd.tokenizer, "BREAK a BREAK BREAK b BREAK").chunks == 2


# -- embedding:name --------------------------------------------------------------------------------
def test_an_embedding_reference_inserts_the_vectors_the_textual_inversion_node_would(sd, embeddings_dir, sd_models):
    paths = PathResolver.create(kinds={"embedding": [embeddings_dir]})
    node_ctx = Context("ti", "sd.textual_inversion", model_store=sd_models, paths=paths)
    taught = TextualInversion().run(node_ctx, sd.tokenizer, sd.text_encoder, "toy.safetensors", "<toy>")
    expected = encode(sd, "a <toy> b", tokenizer=taught["ti_tokenizer"], encoder=taught["ti_text_encoder"])

    assert torch.equal(encode(sd, "a embedding:toy b", paths), expected)
    assert torch.equal(encode(sd, "a embedding:toy.safetensors b", paths), expected)


def test_an_embedding_takes_the_weight_around_it(sd, embeddings_dir):
    paths = PathResolver.create(kinds={"embedding": [embeddings_dir]})
    tokens = Tokenize().run(ctx(paths), sd.tokenizer, "a (embedding:toy:1.3)")
    assert tokens.ids[0, :5].tolist() == [START, 320, -1, -2, END]
    assert tokens.weights is not None and tokens.weights[0, :5].tolist() == pytest.approx([1.0, 1.0, 1.3, 1.3, 1.0])
    assert tokens.vectors is not None and tokens.vectors.shape == (2, WIDTH)


def test_a_missing_embedding_is_a_validation_error_on_the_text_input(sd_registry, tmp_path):
    graph = load_graph(WORKFLOWS / "txt2img.json").model_dump(mode="json")
    graph["nodes"]["prompt"]["inputs"]["text"] = "a embedding:nowhere"
    errors = validate(graph, sd_registry, paths=PathResolver.create([tmp_path]))
    assert [(e.code, e.node, e.input) for e in errors] == [("missing_file", "prompt", "text")]
    assert "nowhere" in errors[0].message


def test_an_embedding_of_another_width_is_refused_clearly(sd, embeddings_dir):
    paths = PathResolver.create(kinds={"embedding": [embeddings_dir]})
    with pytest.raises(ValueError, match="48 wide.*32"):
        encode(sd, "embedding:wide", paths)


def test_the_tokenize_key_follows_the_embedding_file(embeddings_dir):
    context = ctx(PathResolver.create(kinds={"embedding": [embeddings_dir]}))
    before = Tokenize().fingerprint(context, text="embedding:toy")
    save_file({"emb_params": torch.zeros(3, WIDTH)}, str(embeddings_dir / "toy.safetensors"))
    assert Tokenize().fingerprint(context, text="embedding:toy") != before
    assert Tokenize().fingerprint(context, text="no embedding here") == ""


# -- equal lengths for the UNet ----------------------------------------------------------------------
def test_match_lengths_returns_equal_lengths_untouched():
    a, b = torch.zeros(1, 77, 4), torch.ones(1, 77, 4)
    out = match_lengths(a, b)
    assert out[0] is a and out[1] is b


def test_match_lengths_repeats_each_up_to_the_least_common_multiple():
    a, b = torch.randn(1, 154, 4), torch.randn(1, 231, 4)
    ma, mb = match_lengths(a, b)
    assert ma.shape == mb.shape == (1, 462, 4)
    assert torch.equal(ma, torch.cat([a] * 3, dim=1)) and torch.equal(mb, torch.cat([b] * 2, dim=1))


def test_repeating_the_conditioning_leaves_the_unets_prediction_unchanged(sd):
    cond = encode(sd, "a red cube")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        once = sd.unet(latents, 10, encoder_hidden_states=cond).sample
        twice = sd.unet(latents, 10, encoder_hidden_states=cond.repeat(1, 2, 1)).sample
    torch.testing.assert_close(twice, once, rtol=1e-5, atol=1e-5)


# -- end to end ------------------------------------------------------------------------------------
def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: Path, **values: object) -> np.ndarray:
    settings = {"model": model, "steps": 2, "width": 32, "height": 32, "seed": 5, **values}
    return png_pixels(run_graph(WORKFLOWS / "txt2img.json", tmp_path, capsys, **settings)["outputs"][0])


def test_a_150_token_prompt_runs_through_txt2img_and_its_second_chunk_counts(tiny_sd_dir, tmp_path, capsys):
    negative = " ".join(["blurry"] * 100)  # two chunks, like the prompt
    whole = _run(tmp_path / "a", capsys, tiny_sd_dir, prompt=LONG, negative_prompt=negative)
    first_chunk_only = _run(tmp_path / "b", capsys, tiny_sd_dir, prompt=LONG, negative_prompt=negative,
                            **{"prompt.truncate": "true", "negative.truncate": "true"})
    assert whole.shape == (32, 32, 3) and not np.array_equal(whole, first_chunk_only)


def test_a_150_token_prompt_with_a_short_negative_runs_through_txt2img(tiny_sd_dir, tmp_path, capsys):
    # The one-chunk negative is repeated to the prompt's two chunks; an empty prompt written as
    # two empty chunks ("BREAK") is that same repetition, so the pixels must agree exactly.
    image = _run(tmp_path / "a", capsys, tiny_sd_dir, prompt=LONG, negative_prompt="")
    two_chunks = _run(tmp_path / "b", capsys, tiny_sd_dir, prompt=LONG, negative_prompt="BREAK")
    assert image.shape == (32, 32, 3)
    assert np.array_equal(image, two_chunks)


def test_weighted_tokens_with_vectors_survive_the_disk_cache_codec(sd, embeddings_dir):
    from nodeflow.codec import decode_value, encode_value

    tokens = Tokenize().run(ctx(PathResolver.create(kinds={"embedding": [embeddings_dir]})), sd.tokenizer, "(a:1.2) embedding:toy BREAK b")
    stored: dict[str, torch.Tensor] = {}
    back = decode_value(json.loads(json.dumps(encode_value(tokens, stored))), stored)
    assert back.chunks == tokens.chunks == 2
    for name in ("ids", "attention_mask", "weights", "empty", "vectors"):
        assert torch.equal(getattr(back, name), getattr(tokens, name)), name
