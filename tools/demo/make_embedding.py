"""Make the example textual-inversion embedding used by ``workflows/textual_inversion.json``.

    python -m tools.demo.make_embedding [--model default] [--out workflows/embeddings/digit-eight.safetensors]

``<digit-eight>`` is not a trained embedding. It is the mean of the model's own input
embeddings for the words "eight" and "8", saved in the diffusers layout
(``{"<digit-eight>": vector}``), so the workflow shows the textual-inversion mechanics
on the embedded default model with a token whose meaning is known: a prompt with
``<digit-eight>`` should draw an eight. The vector belongs to one text encoder: rerun
this script whenever the default model is retrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

TOKEN = "<digit-eight>"
WORDS = ("eight", "8")
OUT = Path(__file__).resolve().parents[2] / "workflows" / "embeddings" / "digit-eight.safetensors"


def mean_embedding(tokenizer: object, text_encoder: torch.nn.Module, words: tuple[str, ...] = WORDS) -> torch.Tensor:
    """[1, D] float32: the mean of the input-embedding rows of ``words`` (each must be one token)."""
    ids = []
    for word in words:
        word_ids = tokenizer(word, add_special_tokens=False).input_ids  # type: ignore[operator]
        if len(word_ids) != 1:
            raise ValueError(f"{word!r} is {len(word_ids)} tokens, not one")
        ids.append(word_ids[0])
    rows = text_encoder.get_input_embeddings().weight[ids].detach().float()  # type: ignore[operator]
    return rows.mean(dim=0, keepdim=True)


def main(argv: list[str] | None = None) -> None:
    """Write the embedding file for ``--model`` (a path or "default")."""
    from safetensors.torch import save_file

    from nodeflow.models import ModelStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help='a diffusers folder, a .safetensors file or "default"')
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    parts = ModelStore(device="cpu").load_sd(args.model)
    vector = mean_embedding(parts.tokenizer, parts.text_encoder)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({TOKEN: vector[0].contiguous()}, str(args.out), metadata={"token": TOKEN, "words": ",".join(WORDS), "model": str(args.model)})
    print(f"wrote {args.out}: {TOKEN} = mean of {', '.join(WORDS)} ({vector.shape[1]} values)")


if __name__ == "__main__":
    main()
