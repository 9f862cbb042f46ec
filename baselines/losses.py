"""NT-Xent (SimCLR's normalised temperature-scaled cross entropy) with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent between paired views ``a`` [N, D] and ``b`` [N, D]: scalar.

    ``a[i]`` and ``b[i]`` form the positive pair; the other ``2N - 2`` vectors of the batch
    (both modalities) are negatives.  With ``z = normalise(cat(a, b))`` and
    ``s = z z^T / temperature``, the loss is the mean over the ``2N`` anchors ``k`` of
    ``-log(exp(s[k, pos(k)]) / sum_{j != k} exp(s[k, j]))``.
    """
    n = a.size(0)
    z = F.normalize(torch.cat([a, b], dim=0), dim=-1)  # [2N, D]
    sim = z @ z.t() / temperature  # [2N, 2N]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, target)
