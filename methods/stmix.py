"""ST-Mix: spatio-temporal skeleton mixing (Zhang et al., IJCAI 2024), as the official
``skelemix.py::ske_swap_randscale(x, 2, 3, 7, 11)`` (JHang2020/Shap-Mix).

One draw per batch (all from ``ctx.generator``, so a seed replays the same mixes):

1. partner(i) = (i + k) mod N with k ~ U{1..N-2} (``pairing="roll"``, official; N = 2 uses
   k = 1, N = 1 mixes a clip with itself); ``pairing="permutation"`` is the paper's random
   permutation (self-pairs possible).
2. spatial: S ~ U{parts_min..parts_max} distinct parts of ``ctx.layout.parts`` (P0..P4); J is
   the union of their joints (any layout: NTU-25, NW-UCLA-20, COCO-17).
3. temporal, in segments of 4 frames: nseg = T // 4 segments; Ct ~ U{lo..hi}, a ~ U{0..nseg-Ct};
   window = frames [4a, 4a + 4Ct). For T = 64 (nseg 16) lo, hi = 7, 11 exactly as official;
   for another T they are scaled: lo = max(1, floor(7 nseg / 16 + 1/2)), hi = max(lo,
   min(nseg, floor(11 nseg / 16 + 1/2))) (T = 32: 4..6). Frames past 4 nseg (T not a multiple
   of 4) are never in the window, as the official (T // 4)-row mask.
4. u ~ U(0,1); u > mixup_prob (0.75): CutMix branch. Ct2 ~ U{Ct..nseg}, b ~ U{0..nseg-Ct2};
   the partner's source clip [4b, 4b + 4 Ct2) of the ORIGINAL batch is resampled to 4 Ct frames
   with F.interpolate's default legacy float32 'nearest' (we read the source indices from
   F.interpolate itself, so its float32 rounding, which differs from floor(i rt2 / rt) at
   (rt, rt2) = (44, 52), is kept) and pasted at (window, J), all coordinates and persons.
   lam = mean of the (nseg, V) mask = Ct |J| / (nseg V) (= Ct |J| / 400 for NTU-64, in
   [0.14, 0.4675]).
   Else (mixup_prob, 0.25): lam ~ U(0,1) and x_mix = (1 - lam) x + lam x[partner].
5. target of x_mix: Target(y, y[partner], w_b = lam) (lam = the share taken from the partner).
6. one forward on cat([x, x_mix]) (the Method default), loss = CE(x) + soft-CE(x_mix), 1:1.

Options (Table 7 ablation and losses):
- ``spatial=False`` (temporal only): J = all joints inside the window (lam = Ct / nseg);
  ``temporal=False`` (spatial only): the window is all 4 nseg frames and the source clip the
  whole partner clip (Ct = Ct2 = nseg, a = b = 0; resampling is the identity), lam = |J| / V.
  The part and window draws still happen (one RNG stream for every variant).
- ``mixup_prob``: probability of the Mixup branch (official 0.25).
- ``logit_adjust`` (tau): offset tau log pi_c on both terms (0 = plain CE as the balanced
  ST-Mix script ``mix_main.py``; Shap-Mix's LT script uses 1).
- ``parts_min``/``parts_max``, ``ct_min``/``ct_max`` (segments out of ``ct_ref`` = 16) for the
  part / temporal-ratio ablations.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.errors import BenchmarkError
from benchmark.losses import cross_entropy, log_prior
from benchmark.method import Batch, Context, Method, Target, register_method

from ._losses import check_choice

SEG = 4  # frames per temporal segment (official tem_downsample_ratio)


# ----------------------------------------------------------------------------- pure helpers
def segment_bounds(T: int, ct_min: int = 7, ct_max: int = 11, ct_ref: int = 16,
                   seg: int = SEG) -> tuple[int, int, int]:
    """(nseg, lo, hi): segment count of a T-frame clip and the Ct range (see module doc)."""
    nseg = T // seg
    if nseg < 1:
        raise BenchmarkError(f"ST-Mix needs at least {seg} frames, got T={T}")
    if nseg == ct_ref:
        lo, hi = ct_min, ct_max
    else:
        lo = max(1, math.floor(ct_min * nseg / ct_ref + 0.5))
        hi = max(lo, min(nseg, math.floor(ct_max * nseg / ct_ref + 0.5)))
    return nseg, min(lo, nseg), min(hi, nseg)


def nearest_source_index(rt: int, rt2: int) -> torch.Tensor:
    """Source frame of each of the rt output frames when F.interpolate (default legacy
    'nearest', float32 scale) resizes rt2 frames to rt: read off F.interpolate itself."""
    src = torch.arange(rt2, dtype=torch.float32).view(1, 1, rt2)
    return F.interpolate(src, size=rt).view(rt).round().long()


def roll_partner(n: int, k: int, device=None) -> torch.Tensor:
    """partner(i) = (i + k) mod n."""
    return (torch.arange(n, device=device) + int(k)) % n


def part_joint_mask(parts_joints, parts, V: int, device=None) -> torch.Tensor:
    """(V,) bool: the joints of the chosen parts (indices into ``parts_joints``)."""
    m = torch.zeros(V, dtype=torch.bool, device=device)
    for p in parts:
        m[list(parts_joints[p])] = True
    return m


def paste(x: torch.Tensor, partner: torch.Tensor, a: int, Ct: int, Ct2: int, b: int,
          joint_mask: torch.Tensor, seg: int = SEG, source: torch.Tensor | None = None
          ) -> torch.Tensor:
    """x with frames [seg a, seg (a + Ct)) at the masked joints replaced by the partner's
    source clip [seg b, seg (b + Ct2)) resampled to seg Ct frames (legacy nearest).
    ``joint_mask`` is (V,) (one joint set) or (N, V) (a set per sample, Shap-Mix);
    ``source`` (default x) is the batch the partners are taken from."""
    N, C, T, V, M = x.shape
    rt, rt2 = seg * Ct, seg * Ct2
    src = seg * b + nearest_source_index(rt, rt2).to(x.device)
    clip = (x if source is None else source)[partner][:, :, src]  # (N, C, rt, V, M)
    jm = joint_mask.to(x.device)
    jm = jm.view(1, 1, 1, V, 1) if jm.dim() == 1 else jm.view(N, 1, 1, V, 1)
    out = x.clone()
    t0 = seg * a
    out[:, :, t0:t0 + rt] = torch.where(jm, clip, x[:, :, t0:t0 + rt])
    return out


def st_mix_apply(x: torch.Tensor, k, joints, Ct: int, a: int, Ct2: int | None, b: int | None,
                 branch: str, lam: float | None = None, seg: int = SEG,
                 source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ST-Mix with explicit draws. ``k``: roll offset (int) or a partner index tensor;
    ``joints``: the pasted joint ids; ``branch``: "cutmix" or "mixup" (``lam`` its weight).
    ``source``: the batch partners come from (default x; Shap-Mix re-sampling: the aux batch).
    Returns (x_mix, partner (N,), lam (N,) float32 = share taken from the partner)."""
    N, C, T, V, M = x.shape
    partner = (k.to(x.device).long() if isinstance(k, torch.Tensor)
               else roll_partner(N, k, x.device))
    if branch == "mixup":
        x_mix = x * (1 - lam) + (x if source is None else source)[partner] * lam
        return x_mix, partner, torch.full((N,), float(lam), device=x.device)
    if branch != "cutmix":
        raise BenchmarkError(f"branch must be 'cutmix' or 'mixup', got {branch!r}")
    jm = torch.zeros(V, dtype=torch.bool, device=x.device)
    jm[list(joints)] = True
    x_mix = paste(x, partner, a, Ct, Ct2, b, jm, seg, source)
    nseg = T // seg
    lam_v = Ct * int(jm.sum()) / (nseg * V)
    return x_mix, partner, torch.full((N,), lam_v, dtype=torch.float32, device=x.device)


def _randint(lo: int, hi: int, gen) -> int:
    """U{lo..hi} inclusive."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def draw_partner(n: int, pairing: str, gen) -> tuple[torch.Tensor, int | None]:
    """(partner index (n,), roll offset or None)."""
    if pairing == "permutation":
        return torch.randperm(n, generator=gen), None
    k = _randint(1, n - 2, gen) if n >= 3 else (1 if n == 2 else 0)
    return roll_partner(n, k), k


# ----------------------------------------------------------------------------- the method
@register_method("st_mix")
class STMix(Method):
    """ST-Mix on the raw clips: one forward on [x, x_mix]; CE + soft CE (1:1)."""

    display_name = "ST-Mix"
    family = "augmentation (ours)"
    paper = "Zhang et al., IJCAI 2024"
    order = 200

    @dataclass(frozen=True)
    class HParams:
        pairing: str = "roll"        # official cyclic shift k ~ U{1..N-2}; "permutation": paper
        parts_min: int = 2           # ske_swap_randscale(x, 2, 3, 7, 11)
        parts_max: int = 3
        ct_min: int = 7              # segments (of 4 frames) of the reference 64-frame window
        ct_max: int = 11
        ct_ref: int = 16
        mixup_prob: float = 0.25     # official: p > 0.25 -> CutMix branch
        spatial: bool = True         # Table 7: False = all joints in the window
        temporal: bool = True        # Table 7: False = all frames of the chosen parts
        logit_adjust: float = 0.0    # tau; mix_main.py (balanced ST-Mix) uses plain CE

    def setup(self, ctx: Context) -> None:
        hp = self.hp
        check_choice(self.registry_name or "st_mix", "pairing", hp.pairing, ("roll", "permutation"))
        n_parts = len(ctx.layout.parts)
        if not 1 <= hp.parts_min <= hp.parts_max <= n_parts:
            raise BenchmarkError(f"st_mix: need 1 <= parts_min <= parts_max <= {n_parts}")
        if not 0.0 <= hp.mixup_prob <= 1.0:
            raise BenchmarkError("st_mix: mixup_prob must be in [0, 1]")
        self.parts = tuple(tuple(p) for p in ctx.layout.parts)
        self.offset = (log_prior(ctx.class_counts, hp.logit_adjust).to(ctx.device)
                       if hp.logit_adjust else None)

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits if self.offset is None else logits + self.offset, y)

    # draws ---------------------------------------------------------------------------
    def draw(self, N: int, T: int, gen) -> dict:
        """All random decisions of one ST-Mix call, in a fixed order."""
        hp = self.hp
        partner, k = draw_partner(N, hp.pairing, gen)
        s = _randint(hp.parts_min, hp.parts_max, gen)
        parts = tuple(sorted(torch.randperm(len(self.parts), generator=gen)[:s].tolist()))
        nseg, lo, hi = segment_bounds(T, hp.ct_min, hp.ct_max, hp.ct_ref)
        Ct = _randint(lo, hi, gen)
        a = _randint(0, nseg - Ct, gen)
        u = float(torch.rand((), generator=gen))
        d = dict(partner=partner, k=k, parts=parts, Ct=Ct, a=a, Ct2=None, b=None, lam=None)
        if u > hp.mixup_prob:
            d["branch"] = "cutmix"
            if not hp.temporal:
                d.update(Ct=nseg, a=0)
            Ct2 = _randint(d["Ct"], nseg, gen)
            d.update(Ct2=Ct2, b=_randint(0, nseg - Ct2, gen))
        else:
            d["branch"] = "mixup"
            d["lam"] = float(torch.rand((), generator=gen))
        return d

    def joints_of(self, parts, V: int) -> list[int]:
        if not self.hp.spatial:
            return list(range(V))
        return sorted(j for p in parts for j in self.parts[p])

    @torch.no_grad()
    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        x, y = batch.x, batch.y
        N, _, T, V, _ = x.shape
        d = self.draw(N, T, ctx.generator)
        x_mix, partner, lam = st_mix_apply(x, d["partner"], self.joints_of(d["parts"], V),
                                           d["Ct"], d["a"], d["Ct2"], d["b"], d["branch"],
                                           d["lam"])
        partner = partner.to(y.device)
        meta = {"partner": partner, "lam": lam, "branch": d["branch"], "k": d["k"]}
        return dataclasses.replace(batch, inputs=[x, x_mix],
                                   targets=[Target(y), Target(y, y[partner], lam.to(y.device))],
                                   meta={**batch.meta, **meta})
