"""Cancellation inside one model call: block hooks (nodeflow.interrupt) stop a UNet between its blocks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from nodeflow import interrupt, testing
from nodeflow.cache import Cache
from nodeflow.errors import Cancelled
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.node import CancelToken, Event

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _unet_and_inputs() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """A UNet of a shape no other test uses (three levels, 24 wide cross-attention), and one call's inputs."""
    unet = testing.unet((32, 32, 64), (True, True, False), cross_attention_dim=24, seed=3)
    generator = torch.Generator().manual_seed(5)
    sample = torch.randn((2, 4, 16, 16), generator=generator)
    hidden = torch.randn((2, 7, 24), generator=generator)
    return unet, (sample, torch.tensor(11), hidden)


def test_a_watched_unet_not_cancelled_gives_identical_outputs_and_runs_the_check_at_each_block():
    unet, (sample, t, hidden) = _unet_and_inputs()
    with torch.no_grad():
        before = unet(sample, t, encoder_hidden_states=hidden, return_dict=False)[0]
    checks: list[int] = []
    interrupt.watch(unet)
    with torch.no_grad(), interrupt.cancel_scope(lambda: checks.append(1)):
        after = unet(sample, t, encoder_hidden_states=hidden, return_dict=False)[0]

    assert torch.equal(before, after)
    assert len(checks) > 10  # down, mid and up blocks and the resnets and attentions inside them


def test_a_watched_unet_called_outside_any_run_is_not_checked():
    unet, (sample, t, hidden) = _unet_and_inputs()
    interrupt.watch(unet)

    def refuse() -> None:
        raise Cancelled("other")

    entered, finished = threading.Event(), threading.Event()

    def other_run() -> None:  # another thread's run, cancelled: that must not reach a call on this thread
        with interrupt.cancel_scope(refuse):
            entered.set()
            finished.wait(60)

    other = threading.Thread(target=other_run)
    other.start()
    try:
        assert entered.wait(30)
        with torch.no_grad():
            out = unet(sample, t, encoder_hidden_states=hidden, return_dict=False)[0]
    finally:
        finished.set()
        other.join(30)
    assert out.shape == sample.shape


def test_watching_twice_installs_the_hooks_once():
    unet, (sample, t, hidden) = _unet_and_inputs()
    interrupt.watch(unet)
    interrupt.watch(unet)
    checks: list[int] = []
    with torch.no_grad(), interrupt.cancel_scope(lambda: checks.append(1)):
        unet(sample, t, encoder_hidden_states=hidden, return_dict=False)
    once = len(checks)
    fresh, _ = _unet_and_inputs()
    interrupt.watch(fresh)
    checks.clear()
    with torch.no_grad(), interrupt.cancel_scope(lambda: checks.append(1)):
        fresh(sample, t, encoder_hidden_states=hidden, return_dict=False)
    assert len(checks) == once


def test_a_cancel_during_a_unet_call_ends_the_run_cancelled_before_the_step_finishes(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    unet = sd_models.load_sd(tiny_sd_dir).unet  # the store's object: the run below uses this very module
    inside, release = threading.Event(), threading.Event()
    finished_calls: list[int] = []

    def block_once(module, args, output):  # type: ignore[no-untyped-def]
        if not inside.is_set():
            inside.set()
            assert release.wait(60), "the test never released the block"

    handles = [unet.down_blocks[0].register_forward_hook(block_once),
               unet.register_forward_hook(lambda *a: finished_calls.append(1))]
    cancel = CancelToken()
    events: list[Event] = []
    outcome: list = []
    inputs = {"model": str(tiny_sd_dir), "width": 64, "height": 64, "steps": 4, "seed": 71}
    runner = threading.Thread(target=lambda: outcome.append(Executor(sd_registry, Cache(), sd_models).run(
        load_graph(WORKFLOWS / "txt2img.json"), inputs=inputs, output_dir=tmp_path, on_event=events.append, cancel=cancel)))
    try:
        runner.start()
        assert inside.wait(120), "the run never reached the UNet's first block"
        cancel.cancel()  # while the first step's UNet call is between its first and second block
        release.set()
        runner.join(120)
    finally:
        release.set()
        for handle in handles:
            handle.remove()
    assert not runner.is_alive()
    result = outcome[0]
    assert result.status == "cancelled"
    assert result.nodes["denoise"].status == "cancelled"
    assert result.errors[0].code == "cancelled" and result.errors[0].node == "denoise"
    assert finished_calls == []  # the UNet call never returned
    assert not [e for e in events if e.type == "progress"]  # not even the first step finished
