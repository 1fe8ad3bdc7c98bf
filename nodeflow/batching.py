"""Seed batching: sweep jobs that differ only in their seed, run as one batch (``nodeflow sweep --batch-seeds N``).

A GPU runs one UNet call on 8 latents far faster than 8 calls on one. Jobs qualify
when the swept seed is the ``seed`` input of a Noise Latents node (``sd.noise_latents``)
whose ``batch`` is 1, and consecutive jobs differ in nothing but that seed, which
rises by one from each job to the next (``--set seed=0..15`` does that). Up to ``N``
such jobs become one job on the same graph with the noise node's ``batch`` = the group
size and ``per_image_seeds`` on: image ``i`` draws its noise (and every later noise of
a stochastic sampler) from its own CPU generator seeded ``seed + i``, exactly the
numbers a run of that seed alone draws, as diffusers does with a list of generators.

What "the same image" means: the noise is identical, the arithmetic is not always. A
batched UNet call may sum in another order than a batch of one (the kernels block the
work by batch size), so a batched image can differ from the one-by-one image by rounding:
measured on the CPU with the test model, at most 1 level of 255 on a few pixels. It is
pixel-identical to diffusers' pipeline given the same batch and list of generators
(tests/test_sd_batch_seeds.py).

The batched job's files are handed back to the jobs of its group: a node that wrote a
multiple of the group's size (Save Image writes one file per image, in order) gives each
job its share; any other node's files go to the group's first job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import GraphInvalid
from .graph import GraphDoc, resolve_input

#: The node whose seed can be batched, and its inputs the batching sets.
NOISE_NODE = "sd.noise_latents"


def seed_input(doc: GraphDoc, names: Sequence[str]) -> tuple[str, str] | None:
    """``(parameter, noise node id)`` when one of the sweep's ``names`` is a batchable noise seed, else None."""
    for name in names:
        try:
            node_id, input_name = resolve_input(doc, name)
        except GraphInvalid:
            continue
        node = doc.nodes.get(node_id)
        if node is None or node.type != NOISE_NODE or input_name != "seed":
            continue
        batch = node.inputs.get("batch", 1)
        per_image = node.inputs.get("per_image_seeds", False)
        if batch == 1 and per_image in (False, True):  # literals: a linked batch could be anything
            return name, node_id
    return None


def seed_groups(doc: GraphDoc, jobs: Sequence[dict[str, Any]], size: int) -> list[list[int]]:
    """The jobs' indices in groups of at most ``size`` that can run as one batch (singletons otherwise), in order."""
    found = seed_input(doc, list(jobs[0])) if jobs and size > 1 else None
    if found is None:
        return [[i] for i in range(len(jobs))]
    name = found[0]
    groups: list[list[int]] = []
    for index, job in enumerate(jobs):
        group = groups[-1] if groups else None
        if group is not None and len(group) < size and _follows(jobs[group[-1]], job, name):
            group.append(index)
        else:
            groups.append([index])
    return groups


def _follows(previous: dict[str, Any], job: dict[str, Any], name: str) -> bool:
    """Whether ``job`` is ``previous`` with the seed one higher."""
    seed, before = job.get(name), previous.get(name)
    if not (isinstance(seed, int) and isinstance(before, int)) or isinstance(seed, bool) or seed != before + 1:
        return False
    return all(job[k] == previous[k] for k in job if k != name) and set(job) == set(previous)


def batched_inputs(doc: GraphDoc, jobs: Sequence[dict[str, Any]], group: Sequence[int]) -> dict[str, Any]:
    """The graph inputs of the one job that runs ``group`` (its first job's, with the noise node batched)."""
    first = dict(jobs[group[0]])
    if len(group) == 1:
        return first
    found = seed_input(doc, list(first))
    assert found is not None, "seed_groups only groups jobs with a batchable seed"
    node_id = found[1]
    return {**first, f"{node_id}.batch": len(group), f"{node_id}.per_image_seeds": True}


def split_outputs(outputs: Sequence[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """A batched job's ``outputs`` shared out over its ``count`` jobs (see the module docstring)."""
    shares: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    by_node: dict[Any, list[dict[str, Any]]] = {}
    for output in outputs:
        by_node.setdefault(output.get("node"), []).append(output)
    for files in by_node.values():
        if len(files) % count:
            shares[0].extend(files)
            continue
        each = len(files) // count
        for job in range(count):
            shares[job].extend(files[job * each : (job + 1) * each])
    return shares


__all__ = ["NOISE_NODE", "batched_inputs", "seed_groups", "seed_input", "split_outputs"]
