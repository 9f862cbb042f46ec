"""The tagger: text encoder (+ optional image encoders and fusion) + linear + CRF.

One class covers every model of :mod:`baselines.config`; the flags of :class:`ModelConfig`
choose the parts.  Shapes: B batch, T sub-word positions, W words, P image tokens,
d hidden size, L labels.

mner2m (2M-NER): text states H [B,T,d]; ViT tokens V [B,P,dv] and CNN vector c [B,dc] are
projected to d; cross-attention H->V and H->c; ``Linear(cat[H, A_v, A_c]) -> d``;
``Linear(d, L)`` emissions at first sub-tokens; CRF.  Loss ``w_crf * CRF NLL + w_cl *
(NT-Xent(s, pool(V)) + NT-Xent(s, c))`` with s the pooled sentence representation.

mner2m_gated (the robust model, ``cfg.gate == "agreement"``): the same fusion states Z, but as
a correction of a text-only tagger that a per-post gate opens only when text and image agree:
``E = emit(H) + g * emit_img(Z)`` with ``g = sigmoid(a)`` [B] and the agreement logit
``a = Linear(cat[t * v, t * c])`` over the L2-normalised NT-Xent projections (t of the
sentence, v, c of the images: a learnt, weighted sum of the contrastive head's cosine scores).
Training adds ``w_text * CRF NLL(emit(H))`` (the text head alone must tag well),
``w_gate * BCE(a, image_match)`` (``image_match`` [B]: 0 for a post given another post's image
by the trainer, 1 otherwise) and hides or swaps images of a share of posts
(:func:`baselines.train.augment_images`).  NT-Xent leaves swapped pairs out; with
``mismatch_loss = "gate"`` (the recipe) a swapped pair's CRF loss sees the text head only, so
wrong pictures teach the gate to close without teaching the image path to distrust pictures.

Posts without an image (``image_mask`` [B] False) are masked, never given blank pixels: the
image encoders do not see them, their cross-attention outputs (or pooled image vectors, for
concat fusion) are zeros in the fusion input, and NT-Xent runs over the posts that have an
image only.  Their output is therefore the same whatever pixels or features are fed for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.config import ModelConfig
from baselines.crf import CRF
from baselines.data import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, ImageSpec
from baselines.losses import nt_xent


def build_text_encoder(
    cfg: ModelConfig, vocab_size: int, saved: dict[str, Any] | None = None
) -> nn.Module:
    """A transformers encoder: from ``saved`` config (weights come later from a state dict),
    a local path, or a small random BERT."""
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    if saved is not None:
        d = dict(saved)
        return AutoModel.from_config(AutoConfig.for_model(d.pop("model_type"), **d))
    if cfg.text_encoder:
        return AutoModel.from_pretrained(cfg.text_encoder)
    conf = BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=max(512, cfg.max_length + 2),
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    return BertModel(conf, add_pooling_layer=False)


def build_vit(cfg: ModelConfig, saved: dict[str, Any] | None = None) -> nn.Module:
    """CLIP vision tower (patch tokens + pooled CLS)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if saved is not None:
        return CLIPVisionModel(CLIPVisionConfig.from_dict(saved))
    if cfg.vit:
        return CLIPVisionModel.from_pretrained(cfg.vit)
    conf = CLIPVisionConfig(
        image_size=cfg.vit_image_size,
        patch_size=cfg.vit_patch_size,
        hidden_size=cfg.vit_hidden,
        intermediate_size=2 * cfg.vit_hidden,
        num_hidden_layers=cfg.vit_layers,
        num_attention_heads=cfg.vit_heads,
    )
    return CLIPVisionModel(conf)


def build_cnn(cfg: ModelConfig, saved: dict[str, Any] | None = None) -> nn.Module:
    """ResNet giving one global vector per image."""
    from transformers import ResNetConfig, ResNetModel

    if saved is not None:
        return ResNetModel(ResNetConfig.from_dict(saved))
    if cfg.cnn:
        return ResNetModel.from_pretrained(cfg.cnn)
    sizes = list(cfg.cnn_hidden_sizes)
    conf = ResNetConfig(
        embedding_size=min(64, sizes[0]),
        hidden_sizes=sizes,
        depths=list(cfg.cnn_depths) or [1] * len(sizes),
        layer_type=cfg.cnn_layer_type,
    )
    return ResNetModel(conf)


def encoder_identity(module: nn.Module) -> str:
    """A content hash of a module's weights (keys the frozen-feature cache)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return type(module).__name__ + ":" + h.hexdigest()[:16]


class BiLSTMEncoder(nn.Module):
    """Word embeddings + BiLSTM: ids [B, W] -> states [B, W, 2h]."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(emb_dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        x = self.drop(self.emb(input_ids))
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=input_ids.size(1)
        )
        return out


class Tagger(nn.Module):
    """All models: text encoder [+ ViT / CNN + fusion] + emissions + CRF (+ NT-Xent)."""

    def __init__(
        self,
        cfg: ModelConfig,
        labels: Sequence[str],
        vocab_size: int,
        saved_encoders: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.labels = list(labels)
        saved = saved_encoders or {}
        if cfg.encoder == "bilstm":
            self.text = BiLSTMEncoder(vocab_size, cfg.word_emb_dim, cfg.lstm_hidden, cfg.dropout)
            d = 2 * cfg.lstm_hidden
        else:
            self.text = build_text_encoder(cfg, vocab_size, saved.get("text"))
            if getattr(self.text, "pooler", None) is not None:
                self.text.pooler = None  # unused: no dead weights (DDP would flag them)
            d = int(self.text.config.hidden_size)
        self.d = d
        self.vit: nn.Module | None = None
        self.cnn: nn.Module | None = None
        mm = cfg.multimodal
        if mm and cfg.use_vit:
            self.vit = build_vit(cfg, saved.get("vit"))
            dv = int(self.vit.config.hidden_size)
            self.vit_proj = nn.Sequential(nn.Linear(dv, d), nn.LayerNorm(d))
        if mm and cfg.use_cnn:
            self.cnn = build_cnn(cfg, saved.get("cnn"))
            dc = int(self.cnn.config.hidden_sizes[-1])
            self.cnn_proj = nn.Sequential(nn.Linear(dc, d), nn.LayerNorm(d))
        n_img = int(self.vit is not None) + int(self.cnn is not None)
        if mm and cfg.fusion == "cross":
            if self.vit is not None:
                self.attn_vit = nn.MultiheadAttention(
                    d, cfg.cross_heads, dropout=cfg.dropout, batch_first=True
                )
            if self.cnn is not None:
                self.attn_cnn = nn.MultiheadAttention(
                    d, cfg.cross_heads, dropout=cfg.dropout, batch_first=True
                )
        if mm:
            self.fuse = nn.Sequential(nn.Linear((1 + n_img) * d, d), nn.GELU())
        self.gated = mm and cfg.gate == "agreement"
        if self.gated:
            self.emit_img = nn.Linear(d, len(labels))
            # starts as 5 * (sum of the cosines): agreement of the contrastive projections
            self.agree = nn.Linear(n_img * cfg.proj_dim, 1)
            nn.init.constant_(self.agree.weight, 5.0)
            nn.init.zeros_(self.agree.bias)
        if mm and cfg.use_cl:
            self.cl_text = nn.Linear(d, cfg.proj_dim)
            if self.vit is not None:
                self.cl_vit = nn.Linear(d, cfg.proj_dim)
            if self.cnn is not None:
                self.cl_cnn = nn.Linear(d, cfg.proj_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.emit = nn.Linear(d, len(self.labels))
        self.crf = CRF(len(self.labels), self.labels)
        for name, frozen in (("vit", cfg.freeze_vit), ("cnn", cfg.freeze_cnn)):
            mod = getattr(self, name)
            if mod is not None and frozen:
                mod.requires_grad_(False)

    # --- parts ---------------------------------------------------------------------------
    def frozen_modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {}
        if self.vit is not None and self.cfg.freeze_vit:
            out["vit"] = self.vit
        if self.cnn is not None and self.cfg.freeze_cnn:
            out["cnn"] = self.cnn
        return out

    def train(self, mode: bool = True) -> Tagger:
        """Frozen image encoders stay in eval mode (BatchNorm statistics, no dropout)."""
        super().train(mode)
        for mod in self.frozen_modules().values():
            mod.eval()
        return self

    def encoder_parameters(self) -> list[nn.Parameter]:
        mods = [self.text] + [m for m in (self.vit, self.cnn) if m is not None]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        enc = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in enc]

    def saved_encoder_configs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cfg.encoder == "transformer":
            out["text"] = self.text.config.to_dict()
        if self.vit is not None:
            out["vit"] = self.vit.config.to_dict()
        if self.cnn is not None:
            out["cnn"] = self.cnn.config.to_dict()
        return out

    def image_specs(self) -> dict[str, ImageSpec]:
        """Pixel preprocessing of each image encoder."""
        specs: dict[str, ImageSpec] = {}
        if self.vit is not None:
            size = int(self.vit.config.image_size)
            specs["vit"] = ImageSpec.from_path(self.cfg.vit, ImageSpec(size, CLIP_MEAN, CLIP_STD))
        if self.cnn is not None:
            default = ImageSpec(
                224 if self.cfg.cnn else self.cfg.cnn_image_size, IMAGENET_MEAN, IMAGENET_STD
            )
            specs["cnn"] = ImageSpec.from_path(self.cfg.cnn, default)
        return specs

    @torch.no_grad()
    def image_features(self, which: str, pixels: Tensor) -> dict[str, Tensor]:
        """Raw encoder outputs for caching: vit -> ``vit_tokens`` [B,P,dv], ``vit_pooled``
        [B,dv]; cnn -> ``cnn_vec`` [B,dc]."""
        return self._run_image_encoder(which, pixels)

    def _run_image_encoder(self, which: str, pixels: Tensor) -> dict[str, Tensor]:
        if which == "vit":
            out = self.vit(pixel_values=pixels)
            return {"vit_tokens": out.last_hidden_state, "vit_pooled": out.pooler_output}
        out = self.cnn(pixel_values=pixels)
        return {"cnn_vec": out.pooler_output.flatten(1)}

    def _text_states(self, batch: dict[str, Tensor]) -> Tensor:
        if self.cfg.encoder == "bilstm":
            return self.text(batch["input_ids"], batch["attention_mask"])
        out = self.text(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state

    def _sentence(self, h: Tensor, mask: Tensor) -> Tensor:
        if self.cfg.sentence_pool == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def _image_inputs(self, which: str, batch: dict[str, Tensor], has: Tensor) -> dict[str, Tensor]:
        """Features of ``which`` image encoder for the batch: the cached ones in ``batch``, or
        the encoder run on ``<which>_pixels`` of the posts with an image only (``has`` [B]
        bool), the other rows being zeros.  When no post of the batch has an image, the
        encoder still runs on every row (their outputs are masked later): every parameter
        stays in the graph, as DistributedDataParallel requires."""
        names = ("vit_tokens", "vit_pooled") if which == "vit" else ("cnn_vec",)
        if names[0] in batch:
            return {n: batch[n] for n in names}
        pixels = batch[f"{which}_pixels"]
        if bool(has.all()) or not bool(has.any()):
            return self._run_image_encoder(which, pixels)
        some = self._run_image_encoder(which, pixels[has])
        out: dict[str, Tensor] = {}
        for name, t in some.items():
            full = t.new_zeros((has.size(0), *t.shape[1:]))
            full[has] = t
            out[name] = full
        return out

    # --- forward -------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``batch``: collate() tensors plus, for multimodal models, ``vit_pixels`` [B,3,S,S]
        or cached ``vit_tokens``/``vit_pooled``, ``cnn_pixels`` or cached ``cnn_vec``, and
        ``image_mask`` [B] bool (False = the post has no image: its image branch is masked;
        absent = every post has one).  Returns ``emissions`` [B,W,L], ``mask`` [B,W] and, when
        ``word_labels`` is given, ``loss``, ``crf_loss``, ``cl_loss`` (scalars)."""
        h = self._text_states(batch)  # [B, T, d]
        h_text = h
        cfg = self.cfg
        cl_terms: list[Tensor] = []
        agree: list[Tensor] = []  # [B, proj_dim] products of normalised projections (gated)
        has: Tensor | None = None
        match: Tensor | None = None
        img_parts: list[Tensor] = []
        if cfg.multimodal:
            has = batch.get("image_mask")
            if has is None:
                has = torch.ones(h.size(0), dtype=torch.bool, device=h.device)
            has = has.to(device=h.device, dtype=torch.bool)
            keep = has.view(-1, 1, 1)  # [B, 1, 1]
            match = batch.get("image_match")  # [B] 1 = the post's own image (training only)
            paired = has if match is None else has & (match.to(h.device) > 0.5)
            sent = self._sentence(h, batch["attention_mask"])  # [B, d]
            if self.vit is not None:
                feats = self._image_inputs("vit", batch, has)
                v = self.vit_proj(feats["vit_tokens"])  # [B, P, d]
                vp = self.vit_proj(feats["vit_pooled"])  # [B, d]
                if cfg.fusion == "cross":
                    a = self.attn_vit(h, v, v, need_weights=False)[0]  # [B, T, d]
                else:
                    a = vp.unsqueeze(1).expand_as(h)
                img_parts.append(torch.where(keep, a, torch.zeros_like(a)))
                if cfg.use_cl:
                    t, iv = self.cl_text(sent), self.cl_vit(vp)
                    cl_terms.append(self._cl(t, iv, paired))
                    if self.gated:
                        agree.append(_unit(t) * _unit(iv))
            if self.cnn is not None:
                feats = self._image_inputs("cnn", batch, has)
                c = self.cnn_proj(feats["cnn_vec"])  # [B, d]
                if cfg.fusion == "cross":
                    cv = c.unsqueeze(1)
                    a = self.attn_cnn(h, cv, cv, need_weights=False)[0]  # [B, T, d]
                else:
                    a = c.unsqueeze(1).expand_as(h)
                img_parts.append(torch.where(keep, a, torch.zeros_like(a)))
                if cfg.use_cl:
                    t, ic = self.cl_text(sent), self.cl_cnn(c)
                    cl_terms.append(self._cl(t, ic, paired))
                    if self.gated:
                        agree.append(_unit(t) * _unit(ic))
        idx = batch["word_index"].unsqueeze(-1).expand(-1, -1, h.size(-1))
        mask = batch["word_mask"].clone()
        mask[:, 0] = True  # empty sentences: one dummy position, dropped at decoding
        out: dict[str, Tensor] = {"mask": mask}
        text_em: Tensor | None = None
        logit: Tensor | None = None
        crf_em: Tensor | None = None  # what the CRF loss sees, when not the emissions
        if self.gated:
            assert has is not None
            logit = self.agree(torch.cat(agree, dim=-1)).squeeze(-1).float()  # [B]
            gate = torch.sigmoid(logit) * has.to(logit.dtype)  # [B], 0 without an image
            out["gate"] = gate.detach()
            text_em = self.emit(self.drop(h_text.gather(1, idx))).float()  # [B, W, L]
            z = self.fuse(torch.cat([h, *img_parts], dim=-1))  # mner2m's fusion [B, T, d]
            img_em = self.emit_img(self.drop(z.gather(1, idx))).float()  # [B, W, L]
            emissions = text_em + gate.view(-1, 1, 1) * img_em
            if match is not None and cfg.mismatch_loss == "gate":
                # a swapped image teaches the gate only (BCE): its CRF loss sees the text head
                crf_em = text_em + (gate * match.to(gate)).view(-1, 1, 1) * img_em
        else:
            if img_parts:
                h = self.fuse(torch.cat([h, *img_parts], dim=-1))
            words = h.gather(1, idx)  # [B, W, d]
            emissions = self.emit(self.drop(words)).float()  # [B, W, L], float32 under autocast
        out["emissions"] = emissions
        if "word_labels" in batch:
            labels = batch["word_labels"]
            with _float32(emissions):
                em = emissions if crf_em is None else crf_em
                crf = self.crf.nll(em, labels, mask, cfg.crf_constrain_train)
                cl = torch.stack(cl_terms).sum() if cl_terms else emissions.new_zeros(())
                loss = cfg.w_crf * crf + cfg.w_cl * cl if cl_terms else crf
                if self.gated:
                    assert has is not None and logit is not None and text_em is not None
                    text_crf = self.crf.nll(text_em, labels, mask, cfg.crf_constrain_train)
                    target = torch.ones_like(logit) if match is None else match.to(logit)
                    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
                    w = has.to(logit.dtype)
                    gate_loss = (bce * w).sum() / w.sum().clamp(min=1.0)
                    loss = loss + cfg.w_text * text_crf + cfg.w_gate * gate_loss
                    out.update(text_crf_loss=text_crf.detach(), gate_loss=gate_loss.detach())
            out.update(loss=loss, crf_loss=crf.detach(), cl_loss=cl.detach())
        return out

    def _cl(self, a: Tensor, b: Tensor, has: Tensor) -> Tensor:
        """NT-Xent of two projected views [B, D] over the rows with an image (``has`` [B]),
        in float32 even under autocast: scalar.  No row with an image: a zero that keeps the
        projections in the graph (DistributedDataParallel needs every parameter used)."""
        with _float32(a):
            if not bool(has.any()):
                return (a.float().sum() + b.float().sum()) * 0.0
            return nt_xent(a[has].float(), b[has].float(), self.cfg.temperature)

    def decode(self, out: dict[str, Tensor]) -> list[list[int]]:
        """Viterbi tag ids per sentence (BIO-constrained if configured), in float32."""
        emissions = out["emissions"].float()
        with _float32(emissions):
            return self.crf.decode(emissions, out["mask"], self.cfg.crf_constrain_decode)


def _unit(x: Tensor) -> Tensor:
    """Rows of ``x`` [B, D] scaled to unit L2 norm, in float32."""
    return F.normalize(x.float(), dim=-1)


def _float32(t: Tensor):  # -> context manager
    """Autocast off on ``t``'s device: the CRF and the losses run in float32."""
    return torch.autocast(t.device.type, enabled=False)
