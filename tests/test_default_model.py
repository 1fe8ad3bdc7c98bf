"""The embedded default model draws what it is asked for, through the shipped workflows.

Issue 7's acceptance on fewer samples than ``bench/default_model_quality.py`` so the
suite stays fast: a classifier trained on scikit-learn's digits judges the 16x16 PNGs
that ``workflows/txt2img.json`` and ``workflows/img2img.json`` write.
"""

from __future__ import annotations

import pytest

from nodeflow.models import DEFAULT_MODEL

pytest.importorskip("sklearn")
pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").is_file(), reason="the default model is not in this checkout")


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    from tools.demo.quality import WorkflowSampler

    return WorkflowSampler(tmp_path_factory.mktemp("quality"))


def test_txt2img_draws_the_requested_digit_and_guidance_matters(sampler):
    seeds = [0, 1, 2]
    guided = sampler.digit_accuracy(7.5, seeds)
    unguided = sampler.digit_accuracy(1.0, seeds)
    assert guided >= 0.8, f"accuracy at guidance 7.5 was {guided:.2f}"
    assert unguided < guided, f"guidance 1.0 ({unguided:.2f}) should be worse than 7.5 ({guided:.2f})"


def test_negative_prompt_steers_away_from_ones(sampler):
    seeds = range(12)
    plain = sampler.count_label(1, "txt2img", seeds, prompt="a handwritten digit", negative_prompt="")
    steered = sampler.count_label(1, "txt2img", seeds, prompt="a handwritten digit", negative_prompt="the digit 1")
    assert steered < plain, f"1s without the negative prompt: {plain}/12, with it: {steered}/12"


def test_img2img_turns_a_real_three_into_an_eight_more_as_strength_rises(sampler):
    seeds = range(4)

    def eights(strength):
        return sampler.count_label(8, "img2img", seeds, prompt="the digit 8", strength=strength)

    at_06 = eights(0.6)
    assert at_06 > len(seeds) / 2, f"only {at_06}/{len(seeds)} became an 8 at strength 0.6"
    # A light touch keeps the 3: the fraction of 8s rises with strength.
    assert eights(0.05) < at_06 <= eights(0.9)
