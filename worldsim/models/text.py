"""Text conditioning: a tokenizer over the caption grammar and a small transformer.

The captions come from one grammar (:mod:`worldsim.sim.captions`), so the
vocabulary is closed and small: every word of it gets an id, anything else is
``<unk>`` (and counted, so prompts with unknown words can say so). The encoder is
trained with the DiT, from scratch.

Plugging in a frozen pretrained encoder (a T5, a CLIP text tower) instead: anything
with the :class:`TextEncoding` interface works, ``encode(list_of_texts) ->
(tokens (B, L, D), mask (B, L) bool, pooled (B, D))`` plus an ``out_dim``. Wrap the
pretrained model in such a class (freeze it, and cache its outputs per caption: the
caption set is small), and build the :class:`~worldsim.models.dit.DiT` with
``text_dim`` = its ``out_dim``. Nothing pretrained ships with worldsim.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.sim.captions import VOCABULARY

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
_WORD = re.compile(r"[a-z0-9\-]+|[.,]")


class TextEncoding(Protocol):
    """What the DiT needs from a text encoder."""

    out_dim: int

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


class Tokenizer:
    """Words of the caption grammar to ids; ``<cls>`` first, ``<pad>`` after the end."""

    def __init__(self, max_length: int = 96):
        self.words = (PAD, UNK, CLS, ".", ",", *VOCABULARY)
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.max_length = max_length
        self._warned = False

    def __len__(self) -> int:
        return len(self.words)

    def split(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def unknown(self, text: str) -> list[str]:
        """Words of ``text`` outside the vocabulary."""
        return [w for w in self.split(text) if w not in self.ids]

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids (B, L) int64 and mask (B, L) bool (True = a real token). Texts longer
        than ``max_length`` are cut, with one warning per tokenizer."""
        seqs = []
        for text in texts:
            ids = [self.ids[CLS]] + [self.ids.get(w, self.ids[UNK]) for w in self.split(text)]
            if len(ids) > self.max_length:
                if not self._warned:
                    warnings.warn(
                        f"a caption of {len(ids)} tokens is longer than the text encoder's {self.max_length}; cut to fit "
                        "(raise text.max_length to keep whole captions)",
                        stacklevel=2,
                    )
                    self._warned = True
                ids = ids[: self.max_length]
            seqs.append(ids)
        length = max(len(s) for s in seqs)
        out = torch.full((len(seqs), length), self.ids[PAD], dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out, out != self.ids[PAD]


@dataclass
class TextConfig:
    dim: int = 128
    depth: int = 2
    heads: int = 4
    max_length: int = 96  # tokens; longer captions are cut (with a warning)


class TextEncoder(nn.Module):
    """A small transformer over caption tokens: tokens (B, L, D), mask, pooled (B, D)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.max_length)
        self.out_dim = config.dim
        self.embed = nn.Embedding(len(self.tokenizer), config.dim)
        self.pos = nn.Parameter(torch.zeros(config.max_length, config.dim))
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, dim_feedforward=4 * config.dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, L, D)
        x = self.norm(self.layers(x, src_key_padding_mask=~mask))  # (B, L, D)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
        return x, pooled

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer(texts)
        ids, mask = ids.to(self.pos.device), mask.to(self.pos.device)
        tokens, pooled = self(ids, mask)
        return tokens, mask, pooled


def pad_text(text: Any, length: int) -> Any:
    """Caption tokens (B, L, D), mask (B, L), pooled (B, D) padded with masked tokens
    to ``length``: the same cross-attention, at one shape whatever the captions (a
    compiled DiT then meets one text length, not one a caption)."""
    if not isinstance(text, tuple) or text[0].shape[1] >= length:
        return text
    tokens, mask, pooled = text
    extra = length - tokens.shape[1]
    return (F.pad(tokens, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False), pooled)


def text_bucket(length: int, max_length: int, smallest: int = 16) -> int:
    """The padded length for captions of ``length`` tokens: the next power of two from
    ``smallest``, at most ``max_length`` (a handful of shapes, not one a caption)."""
    bucket = smallest
    while bucket < length:
        bucket *= 2
    return max(length, min(bucket, max_length))
