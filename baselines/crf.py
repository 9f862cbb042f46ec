"""A linear-chain CRF in plain torch: forward algorithm (log partition), gold score, Viterbi.

Shapes: ``emissions`` [B, W, L] (W positions, L tags), ``tags`` [B, W] (long),
``mask`` [B, W] (bool, left-aligned: each row is ``[1]*n + [0]*(W-n)``, ``n >= 1``).
Optional BIO constraints forbid ``O -> I-X``, ``B-X/I-X -> I-Y`` (Y != X) and ``START -> I-X``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

NEG = -1.0e4
"""Score of a forbidden transition (finite, so sums stay finite)."""


def bio_allowed(labels: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Allowed transitions under strict IOB2: (``trans`` [L, L] bool, ``start`` [L] bool)."""
    n = len(labels)
    trans = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(labels):
            if frm == "O" or frm[2:] != to[2:]:
                trans[i, j] = False
    return trans, start


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags with learnt start/end/transition scores."""

    def __init__(self, num_tags: int, labels: Sequence[str] | None = None) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        if labels is not None:
            trans_ok, start_ok = bio_allowed(labels)
        else:
            trans_ok, start_ok = torch.ones(num_tags, num_tags, dtype=torch.bool), None
        self.register_buffer("trans_penalty", (~trans_ok).float() * NEG, persistent=False)
        start_pen = torch.zeros(num_tags) if start_ok is None else (~start_ok).float() * NEG
        self.register_buffer("start_penalty", start_pen, persistent=False)

    def _params(self, constrained: bool) -> tuple[Tensor, Tensor, Tensor]:
        if constrained:
            return (
                self.transitions + self.trans_penalty,
                self.start + self.start_penalty,
                self.end,
            )
        return self.transitions, self.start, self.end

    def score(
        self, emissions: Tensor, tags: Tensor, mask: Tensor, constrained: bool = False
    ) -> Tensor:
        """Unnormalised score of ``tags`` per sequence: [B]."""
        trans, start, end = self._params(constrained)
        mask_f = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # [B, W]
        s = start[tags[:, 0]] + (emit * mask_f).sum(1)
        if tags.size(1) > 1:
            t = trans[tags[:, :-1], tags[:, 1:]]  # [B, W-1]
            s = s + (t * mask_f[:, 1:]).sum(1)
        last = mask.long().sum(1) - 1  # [B]
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)
        return s + end[last_tags]

    def log_partition(self, emissions: Tensor, mask: Tensor, constrained: bool = False) -> Tensor:
        """log Z per sequence by the forward algorithm: [B]."""
        trans, start, end = self._params(constrained)
        alpha = start.unsqueeze(0) + emissions[:, 0]  # [B, L]
        for i in range(1, emissions.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, i]
            alpha = torch.where(mask[:, i].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + end.unsqueeze(0), dim=1)

    def nll(
        self, emissions: Tensor, tags: Tensor, mask: Tensor, constrained: bool = False
    ) -> Tensor:
        """Mean negative log-likelihood over the batch: scalar."""
        tags = tags.masked_fill(~mask, 0)
        logz = self.log_partition(emissions, mask, constrained)
        return (logz - self.score(emissions, tags, mask, constrained)).mean()

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor, constrained: bool = True) -> list[list[int]]:
        """Viterbi: the best tag sequence of each row, of length ``mask[b].sum()``."""
        trans, start, end = self._params(constrained)
        score = start.unsqueeze(0) + emissions[:, 0]  # [B, L]
        history: list[Tensor] = []
        for i in range(1, emissions.size(1)):
            cand = score.unsqueeze(2) + trans.unsqueeze(0)  # [B, L_from, L_to]
            best, idx = cand.max(dim=1)
            nxt = best + emissions[:, i]
            score = torch.where(mask[:, i].unsqueeze(1), nxt, score)
            history.append(idx)
        score = score + end.unsqueeze(0)
        lengths = mask.long().sum(1).tolist()
        out: list[list[int]] = []
        for b, n in enumerate(lengths):
            tag = int(score[b].argmax())
            path = [tag]
            for idx in reversed(history[: n - 1]):
                tag = int(idx[b, tag])
                path.append(tag)
            out.append(path[::-1])
        return out
