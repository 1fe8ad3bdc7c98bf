"""The prompt syntax parser: weights, escapes, embeddings and BREAK, no torch involved.

Expected weights are written by hand from the documented rules: ComfyUI's
(``comfy/sd1_clip.py``: ``token_weights``, ``escape_important``; its README's "(good
code:1.2)" and "\\(" notes) and A1111's (``modules/prompt_parser.py``'s
``parse_prompt_attention`` docstring and the wiki's "Attention/emphasis" section).
Where the three readings differ the test says which one nodeflow follows.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nodeflow_nodes.sd.prompt_syntax import Segment, embedding_names, parse_prompt


def runs(text: str) -> list[tuple[str, float]]:
    return [(s.text, s.weight) for s in parse_prompt(text)]


# -- what all three read the same way -------------------------------------------------------
def test_round_brackets_multiply_by_1_1():
    assert runs("a (red) cube") == [("a ", 1.0), ("red", 1.1), (" cube", 1.0)]


def test_nested_round_brackets_multiply_again():
    assert runs("((red))") == [("red", 1.1 * 1.1)]
    assert runs("(((red)))") == [("red", 1.1 * 1.1 * 1.1)]


def test_an_explicit_weight_sets_the_weight():
    assert runs("a (red cube:1.3) b") == [("a ", 1.0), ("red cube", 1.3), (" b", 1.0)]
    assert runs("(red: 0.5 )") == [("red", 0.5)]


def test_escaped_brackets_are_literal_text():
    assert runs(r"a \(red\) cube") == [("a (red) cube", 1.0)]
    assert runs(r"(a\):1.2)") == [("a)", 1.2)]


def test_a_plain_prompt_is_one_segment_holding_the_text_exactly():
    text = "a photo of an astronaut, riding a horse; 4k,  detailed\n"
    assert parse_prompt(text) == [Segment(text, 1.0)]


def test_an_empty_prompt_has_no_segments():
    assert parse_prompt("") == []


def test_a_weight_of_one_merges_into_the_plain_text_around_it():
    assert runs("a (red:1.0) cube") == [("a red cube", 1.0)]


# -- where they differ ---------------------------------------------------------------------
def test_square_brackets_divide_by_1_1_as_in_a1111():
    # A1111: 1/1.1. ComfyUI's default parser has no square brackets: "[red]" is literal text there.
    assert runs("a [red] cube") == [("a ", 1.0), ("red", 1 / 1.1), (" cube", 1.0)]
    assert runs("[[red]]") == [("red", (1 / 1.1) * (1 / 1.1))]


def test_a_nested_explicit_weight_replaces_the_outer_weight_as_in_comfyui():
    # ComfyUI: ((red:1.3)) is 1.3. A1111 multiplies: 1.3 * 1.1 = 1.43.
    assert runs("((red:1.3))") == [("red", 1.3)]
    assert runs("[(red:1.3)]") == [("red", 1.3)]


def test_groups_inside_an_explicit_weight_multiply_on_top_of_it():
    assert runs("((a):2)") == [("a", 2 * 1.1)]
    assert runs("a (b (c:0.5) d) e") == [("a ", 1.0), ("b ", 1.1), ("c", 0.5), (" d", 1.1), (" e", 1.0)]


def test_an_unclosed_bracket_is_literal_as_in_comfyui():
    # A1111 applies 1.1 to the rest of the prompt ("unclosed" at 1.1).
    assert runs("(unclosed") == [("(unclosed", 1.0)]
    assert runs("a [b") == [("a [b", 1.0)]


def test_stray_closing_brackets_are_literal():
    assert runs("smile :) ok]") == [("smile :) ok]", 1.0)]


def test_mismatched_bracket_kinds_do_not_close_each_other():
    assert runs("(a]") == [("(a]", 1.0)]
    assert runs("[a (b] c)") == [("[a ", 1.0), ("b] c", 1.1)]


def test_a1111_docstring_example_as_nodeflow_reads_it():
    # A1111 reads it as: a 1.0, house 1.573, ' ' 1.1, on 1.0, ' a ' 1.1, hill 0.55,
    # ', sun, ' 1.1, sky 1.4641, '.' 1.1 (the first '(' is never closed and so weighs
    # the rest of the prompt). Here the unclosed '(' is literal and explicit weights are absolute.
    assert runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a (", 1.0), ("house", 1.3), (" ", 1.0), ("on", 1 / 1.1), (" a ", 1.0), ("hill", 0.5),
        (", sun, ", 1.0), ("sky", 1.1 * 1.1 * 1.1), (".", 1.0),
    ]


def test_a_colon_without_a_number_is_text_and_the_group_weighs_1_1():
    assert runs("(time: noon)") == [("time: noon", 1.1)]
    assert runs("(a:1.2 (b))") == [("a:1.2 ", 1.1), ("b", 1.1 * 1.1)]


# -- embeddings and BREAK ------------------------------------------------------------------
def test_an_embedding_reference_is_its_own_segment_with_the_weight_around_it():
    assert parse_prompt("a embedding:cat-toy, (embedding:style.pt:1.2)") == [
        Segment("a ", 1.0), Segment("cat-toy", 1.0, "embedding"), Segment(", ", 1.0), Segment("style.pt", 1.2, "embedding"),
    ]


def test_embedding_must_start_a_word():
    assert parse_prompt("myembedding:x") == [Segment("myembedding:x", 1.0)]


def test_embedding_names_lists_each_name_once():
    assert embedding_names("embedding:a embedding:b (embedding:a:0.5)") == ["a", "b"]


def test_break_splits_and_drops_the_spaces_around_it():
    assert parse_prompt("a cat BREAK (a dog)") == [Segment("a cat"), Segment("", 1.0, "break"), Segment("a dog", 1.1)]


def test_break_must_be_an_upper_case_whole_word():
    assert parse_prompt("breakfast BREAKS break") == [Segment("breakfast BREAKS break")]


# -- properties ------------------------------------------------------------------------------
_SPECIAL = "()[]\\"
plain_text = st.text(alphabet=st.characters(blacklist_characters=_SPECIAL, blacklist_categories=("Cs",)), max_size=40).filter(
    lambda t: "BREAK" not in t and "embedding:" not in t
)


def _escape(text: str) -> str:
    return re.sub(r"([()\[\]])", r"\\\1", text)


@given(plain_text)
def test_text_without_syntax_parses_to_itself(text):
    assert parse_prompt(text) == ([Segment(text)] if text else [])


@given(st.text(max_size=40).filter(lambda t: "BREAK" not in t and "embedding:" not in t))
def test_escaping_every_bracket_gives_the_text_back_at_weight_one(text):
    assert parse_prompt(_escape(text)) == ([Segment(text)] if text else [])


@given(plain_text.filter(bool), st.floats(min_value=0.0, max_value=10.0).map(lambda w: round(w, 3)))
def test_an_explicit_weight_applies_to_exactly_the_bracketed_text(text, weight):
    parsed = parse_prompt(f"x ({_escape(text)}:{weight}) y")
    inner = [s for s in parsed if s.weight == weight]
    if weight == 1.0:
        assert parsed == [Segment(f"x {text} y")]
    else:
        assert inner == [Segment(text, weight)]


@given(st.text(max_size=60))
def test_any_text_parses_and_keeps_every_non_bracket_character(text):
    parsed = parse_prompt(text)
    kept = "".join(s.text for s in parsed if s.kind == "text")
    assert all(ch in text for ch in kept)


@pytest.mark.parametrize("depth", [1, 50, 3000])
def test_deep_nesting_needs_no_recursion(depth):
    assert runs("(" * depth + "x" + ")" * depth)[0][0] == "x"
