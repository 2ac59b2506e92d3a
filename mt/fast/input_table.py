"""Search's layer-0 input projections: multiplied at first, looked up in a table once that pays.

Every search step projects the previous tokens' embeddings into the decoder's gates (``project_input``: (B, E) x
(E, G*H)). The projection of a token never changes while the weights do not, so a (V, G*H) table of every
token's can be looked up instead. Making it costs as much as projecting V rows, more than a one-sentence
translation, so search multiplies until the rows it projected since the weights last changed reach V: a
one-line ``mt translate`` or the demo's first sentence never pays for a table, a file or a pipe makes it once.
"""

from __future__ import annotations

import torch
from torch import nn

from mt.fast.recurrent import project_input
from mt.model.recurrent import StackedRecurrent

__all__ = ["InputProjections", "TABLE_BYTES"]

TABLE_BYTES = 256 * 2**20  # no table beyond this size (65 MB for V=8,000, H=512 in fp32)


class InputProjections:
    """Owned by a decoder, which calls ``forget`` whenever its weights may have changed; the in-place version
    counters of the weights guard against any other change."""

    def __init__(self):
        self.forget()

    def forget(self) -> None:
        self.made_from: tuple | None = None  # the weights' versions and the dtype the counts and the table are for
        self.rows = 0  # rows projected since then
        self.table: torch.Tensor | None = None  # (V, G*H)

    def __call__(self, embed: nn.Embedding, rnn: StackedRecurrent, prev: torch.Tensor) -> torch.Tensor:
        """prev: (B,) token ids -> (B, G*H) their layer-0 input projections, as ``project_input(rnn,
        embed(prev))`` gives them (in the autocast dtype under autocast)."""
        device = prev.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else embed.weight.dtype
        vocab, width = embed.weight.shape[0], rnn.weight_ih_l0.shape[0]
        if torch.is_grad_enabled() or vocab * width * dtype.itemsize > TABLE_BYTES:
            return project_input(rnn, embed(prev))
        made_from = (dtype, *(t._version for t in (embed.weight, *rnn.layer(0))))
        if made_from != self.made_from:
            self.forget()
            self.made_from = made_from
        self.rows += prev.shape[0]
        if self.table is None and self.rows >= vocab:
            with torch.autocast(device, enabled=False):
                self.table = project_input(rnn, embed.weight).to(dtype)  # (V, G*H), rounded once
        if self.table is not None:
            return self.table.index_select(0, prev)
        return project_input(rnn, embed(prev))
