"""The CRF against brute-force enumeration on tiny sequences (with masks and BIO constraints)."""

from __future__ import annotations

import itertools

import pytest
import torch

from baselines.crf import CRF, bio_allowed

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _brute(crf: CRF, em: torch.Tensor, n: int, constrained: bool) -> tuple[float, list[int]]:
    """log Z and the argmax sequence of one sentence of length n, by enumeration."""
    trans, start, end = (t.detach() for t in crf._params(constrained))
    scores: dict[tuple[int, ...], float] = {}
    for seq in itertools.product(range(crf.num_tags), repeat=n):
        s = start[seq[0]] + em[0, seq[0]] + end[seq[-1]]
        for i in range(1, n):
            s = s + trans[seq[i - 1], seq[i]] + em[i, seq[i]]
        scores[seq] = float(s)
    logz = float(torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0))
    best = max(scores, key=scores.__getitem__)
    return logz, list(best)


@pytest.mark.parametrize("constrained", [False, True])
def test_partition_score_and_viterbi_match_brute_force(constrained: bool) -> None:
    torch.manual_seed(0)
    crf = CRF(len(LABELS), LABELS).double()
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    lengths = [4, 1, 3, 2]
    em = torch.randn(len(lengths), 4, len(LABELS), dtype=torch.float64)
    mask = torch.tensor([[i < n for i in range(4)] for n in lengths])
    logz = crf.log_partition(em, mask, constrained).detach()
    paths = crf.decode(em, mask, constrained)
    for b, n in enumerate(lengths):
        ref_z, ref_path = _brute(crf, em[b, :n], n, constrained)
        assert float(logz[b]) == pytest.approx(ref_z, abs=1e-8)
        assert paths[b] == ref_path
        assert len(paths[b]) == n
    # the gold score of a path matches the enumeration's term and NLL >= 0
    tags = torch.randint(0, len(LABELS), (len(lengths), 4))
    score = crf.score(em, tags, mask, constrained).detach()
    for b, n in enumerate(lengths):
        trans, start, end = crf._params(constrained)
        seq = tags[b, :n].tolist()
        s = start[seq[0]] + em[b, 0, seq[0]] + end[seq[-1]]
        for i in range(1, n):
            s = s + trans[seq[i - 1], seq[i]] + em[b, i, seq[i]]
        assert float(score[b]) == pytest.approx(float(s.detach()), abs=1e-8)
    assert float(crf.nll(em, tags, mask).detach()) >= 0


def test_padding_does_not_change_results() -> None:
    torch.manual_seed(1)
    crf = CRF(len(LABELS), LABELS)
    em = torch.randn(1, 3, len(LABELS))
    padded = torch.cat([em, torch.randn(1, 2, len(LABELS)) * 100], dim=1)
    m3 = torch.ones(1, 3, dtype=torch.bool)
    m5 = torch.tensor([[True, True, True, False, False]])
    assert torch.allclose(crf.log_partition(em, m3), crf.log_partition(padded, m5))
    assert crf.decode(em, m3) == crf.decode(padded, m5)


def test_bio_constraints() -> None:
    trans, start = bio_allowed(LABELS)
    i = LABELS.index
    assert not trans[i("O"), i("I-PER")]
    assert not trans[i("B-LOC"), i("I-PER")]
    assert not trans[i("I-LOC"), i("I-PER")]
    assert trans[i("B-PER"), i("I-PER")] and trans[i("I-PER"), i("I-PER")]
    assert trans[i("I-PER"), i("B-LOC")] and trans[i("O"), i("B-PER")]
    assert not start[i("I-PER")] and start[i("B-PER")] and start[i("O")]
    # emissions that strongly prefer an invalid sequence: constrained decoding stays valid
    crf = CRF(len(LABELS), LABELS)
    em = torch.full((1, 3, len(LABELS)), -5.0)
    em[0, 0, i("I-PER")] = 5.0
    em[0, 1, i("O")] = 5.0
    em[0, 2, i("I-LOC")] = 5.0
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert crf.decode(em, mask, constrained=False)[0] == [i("I-PER"), i("O"), i("I-LOC")]
    path = [LABELS[t] for t in crf.decode(em, mask, constrained=True)[0]]
    prev = "O"
    for tag in path:
        if tag.startswith("I-"):
            assert prev != "O" and prev[2:] == tag[2:]
        prev = tag
