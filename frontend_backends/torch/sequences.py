"""PyTorch kernels on label sequences: the edit distance (see ``Backend.edit_distance``)."""

from __future__ import annotations

import torch

__all__ = ["edit_distance"]


def edit_distance(a: torch.Tensor, a_lens: torch.Tensor, b: torch.Tensor, b_lens: torch.Tensor) -> torch.Tensor:
    """See ``Backend.edit_distance``.

    One row ``D[i, :]`` of the distance matrix per label of ``a``, for all sequences at once. Within a row,
    ``D[i, j] = min(c[j], D[i, j-1] + 1)`` with ``c`` the deletion and substitution candidates, so
    ``D[i, j] - j = min_{k <= j} (c[k] - k)``: a cumulative minimum instead of a loop over ``j``. A row past the end
    of a sequence of ``a`` keeps the previous one; the result is ``D[a_len, b_len]``.
    """
    positions = torch.arange(b.shape[1] + 1, device=b.device)
    row = positions.expand(b.shape[0], -1)
    a_lens, b_lens = a_lens.to(b.device), b_lens.to(b.device)
    for i in range(a.shape[1]):
        substitute = row[:, :-1] + (a[:, i : i + 1] != b).to(row.dtype)
        candidates = torch.cat([row[:, :1] + 1, torch.minimum(row[:, 1:] + 1, substitute)], dim=1)
        new_row = torch.cummin(candidates - positions, dim=1).values + positions
        row = torch.where((a_lens > i)[:, None], new_row, row)
    return row.gather(1, b_lens[:, None].long())[:, 0].to(torch.int32)
