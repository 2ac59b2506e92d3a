"""Search's layer-0 input projections: multiplied at first, looked up in a table once that pays.

Every search step projects the previous tokens' embeddings into the decoder's gates (``project_input``: (B, E) x
(E, G*H), 6% of a fp32 step on Multi30k). The projection of a token never changes while the weights do not, so
a (V, G*H) table of every token's can be looked up instead. Making it costs as much as projecting V rows (110-140
ms for 8,000 pieces, E=256, H=512 on AMD Zen 3, more than a warm one-sentence translation), so search multiplies
until the rows it projected since the weights last changed (``mt.model.weight_stamp``) reach V: a one-line
``mt translate`` or the demo's first sentence never pays for a table, a file or a pipe makes it once.
"""

from __future__ import annotations

import torch
from torch import nn

from mt.model.recurrent import StackedRecurrent
from mt.model.weight_stamp import stamp

__all__ = ["InputProjections", "TABLE_BYTES"]

TABLE_BYTES = 256 * 2**20  # no table beyond this size (65 MB for V=8,000, H=512 in fp32)


class InputProjections:
    def __init__(self):
        self.made_from: tuple | None = None  # the weights and dtype the counts and the table are for
        self.rows = 0  # rows projected since then
        self.table: torch.Tensor | None = None  # (V, G*H)

    def __call__(self, embed: nn.Embedding, rnn: StackedRecurrent, prev: torch.Tensor) -> torch.Tensor:
        """prev: (B,) token ids -> (B, G*H) their layer-0 input projections, as ``rnn.project_input(embed(prev))``
        gives them (in the autocast dtype under autocast)."""
        device = prev.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else embed.weight.dtype
        vocab, width = embed.weight.shape[0], rnn.weight_ih_l0.shape[0]
        if not torch.is_grad_enabled() and vocab * width * dtype.itemsize <= TABLE_BYTES:
            made_from = (dtype, stamp(embed.weight, *rnn.input_params()))
            if made_from != self.made_from:
                self.made_from, self.rows, self.table = made_from, 0, None
            self.rows += prev.shape[0]
            if self.table is None and self.rows >= vocab:
                with torch.autocast(device, enabled=False):
                    self.table = rnn.project_input(embed.weight).to(dtype)  # (V, G*H), rounded once
            if self.table is not None:
                return self.table.index_select(0, prev)
        return rnn.project_input(embed(prev))
