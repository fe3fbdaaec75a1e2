"""Shap-Mix (Zhang et al., IJCAI 2024): Shapley-guided ST-Mix for long-tailed skeletons, as the
official ``shapley_mix_main_ddp_logits_adjust.py`` + ``shapley_value.py`` +
``skelemix.py::ske_swap_randscale_sample_noweighted`` (JHang2020/Shap-Mix).

State: ``table`` (C, 20) initialised to 1e-6, one entry per class and part combination (the 10
pairs then the 10 triples of P0..P4 in ``itertools.combinations`` order = the official
``mapping``; complement(k) = 19 - k).

Per iteration (``transform_batch``, on the un-mixed batch, before the training forward):
1. estimate (epochs < naive_mix_epoch, or every ``estimate_every``-th batch of the epoch):
   T = |T| ~ U{2,3} parts; epochs < naive_estimate_epoch (5): dv_i = v_i(T) - v(empty)
   (warm-up estimator, v(empty) = pure baseline); later: s ~ U{0..5-|T|}, S = s random parts
   of the complement of T (ONE (T, S) pair for the whole batch), dv_i = v_i(S u T) - v_i(S).
   v = softmax(raw logits)[y] of the eval-mode model (``ctx.eval_forward``, in fp32 whatever
   the training precision; both coalitions of the batch in ONE forward); coalition input =
   baseline with the sample's real coordinates at the coalition's joints (all frames, coords,
   persons).
   w_i = 10 ReLU(dv_i) / joints(T); EMA with decay 0 for epoch <= naive_estimate_epoch, then
   ``ema`` (0.9) (the official off-by-one: the decay tests ``epoch > naive_estimate_epoch``).
2. epochs < naive_mix_epoch: random ST-Mix (methods.stmix). Later: the table is averaged over
   ranks (``ctx.all_reduce_mean``, every iteration, as the official DDP script), then guided
   mixing: one k, Ct, a, branch (and Ct2, b) per batch; per sample, if the partner is the
   minority: c ~ softmax(table[y_partner] / temperature), paste combination c; else
   c ~ softmax(table[y_i] / temperature) and paste complement(c) = 19 - c. lam_i =
   Ct |J_i| / (nseg V) (= 4 Ct |J_i| / 1600 for NTU-64). The Mixup branch (0.25) is ST-Mix's.
3. loss: logit adjustment tau = 1 (Balanced Softmax) on both the clean and the mixed term, 1:1.

Options (each default = the official code):
- ``ema="per_sample"``: the official sequential per-sample EMA (same-class samples of one batch
  compound: old d^m + (1-d) sum_j d^(m-1-j) w_j, emulated in closed form per class present);
  ``"per_class"``: d old + (1-d) mean of the batch's w for that class (one update per class
  and step; the official code updates sample by sample).
- ``minority="counts"`` (default, our decision: real counts): the partner is the minority when
  n_{y_partner} < n_{y_i} (equal counts, incl. the same class: own complement);
  ``"index"``: the official proxy y_partner > y_i (pri = C - y: class index for count, right
  only for BRL's head-first class order; ties in count are broken by index).
- ``estimate_every`` (Table 13 Iter-1/2/5): estimate when batch_idx % n == 0 (epochs < 5
  always estimate, as official).
- ``guidance="shapley"`` | ``"gradcam"`` (Table 8, see below) | ``"random"`` (Table 8:
  combination uniform over the 20, no estimation, no table).
- ``rw_rs="rw"`` (re-weighting: the official script, the loss offset) | ``"rs"`` (re-sampling:
  the partners come from a class-balanced aux batch, ``Stage.aux_sampler="class_balanced"``;
  partner of clip i = aux clip i, the pairing draw is still made; our reading of
  ``Feeder_LT_nosample_hybrid``, the released script never wires it in; the loss offset is kept).
- ``temperature`` 0.2, ``ema`` 0.9, ``naive_estimate_epoch`` / ``naive_mix_epoch`` 5, the
  ST-Mix options of ``STMix.HParams``.

Grad-CAM guidance (Table 8; the official repo ships none, only an unused ``_generate_mask``
call, so this design is ours, after Grad-CAM, Selvaraju et al., ICCV 2017):
- Same schedule as the Shapley estimator (epochs < naive_mix_epoch or every ``estimate_every``
  batch), same ``ema_decay`` rule, same ``ema_update``, per-iteration table averaging over
  ranks from naive_mix_epoch, same guided mixing. No warm-up estimator (Grad-CAM needs no
  coalitions) and no baseline clip.
- Saliency on the un-mixed batch, eval-mode model (BN running stats used, not updated): the
  last GCN block's map A = ``model.features(x)`` (N, M, K, T', V) (the model contract of
  :mod:`benchmark.backbones`; CTR-GCN's l10 output (N*M, K, T', V) viewed per person) is computed
  under no_grad, then ``methods.fsa.grad_cam`` takes d logit_y / dA through ``pool`` + ``head``
  with ``autograd.grad`` w.r.t. the detached map only (one forward, one grad for the batch; no
  parameter ``.grad``): alpha = mean over (T', V) per clip, person and channel, cam =
  ReLU(sum_k alpha_k A_k). A backbone without ``features``/``pool``/``head`` is a
  BenchmarkError. Joint saliency s (N, V) = cam summed over T' and over the persons PRESENT in
  the input (a zero-padded second person's map only reflects biases, so it is left out).
- Scale: s is normalised per clip to a distribution over joints (all-zero cam: all zeros) and a
  combination's value is its share of the clip's saliency, f_k = sum_{v in k} s_v / sum_v s_v.
  By efficiency, the Shapley values of a combination and of the remaining parts sum to
  v(all) - v(empty) <= 1, which is close to 1 once the model fits its training clips, so f_k is
  the Grad-CAM analogue of phi(T) on the same scale; then the Shapley path's normalisation,
  w_k = 10 f_k / joints(k) (``update_value``: the mean normalised joint saliency x 10), keeps
  the temperature 0.2 meaningful for both tables.
- All 20 columns are updated at every estimation (Grad-CAM scores every combination at once;
  the Shapley estimator samples one T per batch and so updates one column).

Decisions:
- Baseline (``baseline="raw_mean"``, official): the mean of the raw (untransformed) LT training
  clips' first ``window`` frames, padding zeros and absent persons included (``avg_motion``),
  from the harness's ``ctx.extras["raw_mean_clip"]``; computed once, kept in the state. On
  NW-UCLA, whose store holds raw camera coordinates that the official transform min-max
  normalises, that mean is not in the input's frame: use ``baseline="batch_mean"``, the running
  mean of the (transformed) epoch-0 training batches (averaged over ranks), frozen from epoch 1.
- joints(T) uses the layout's true part sizes (NTU 5, 6, 6, 4, 4 = official; COCO 5, 3, 3, 3, 3
  where the official K400 code reuses the NTU counts).
- The unused python draw of the official paste branch (``Cs``) is not replayed (own RNG stream).
- DDP: each rank updates its own table with its own samples; from epoch naive_mix_epoch the
  tables are averaged every iteration (the official effective EMA); before, never.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch

from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context, Stage, Target, register_method

from ._losses import check_choice
from ._precision import fp32, fp32_eval_forward
from .fsa import grad_cam
from .stmix import STMix, _randint, draw_partner, paste, segment_bounds, st_mix_apply

N_PARTS = 5
COMBOS: tuple[tuple[int, ...], ...] = (tuple(itertools.combinations(range(N_PARTS), 2))
                                       + tuple(itertools.combinations(range(N_PARTS), 3)))
COMBO_INDEX = {c: i for i, c in enumerate(COMBOS)}


def combo_index(parts) -> int:
    return COMBO_INDEX[tuple(sorted(parts))]


def complement(k: int) -> int:
    """Index of the complementary combination (19 - k)."""
    return COMBO_INDEX[tuple(p for p in range(N_PARTS) if p not in COMBOS[k])]


def parts_joint_mask(layout_parts, parts, V: int) -> torch.Tensor:
    m = torch.zeros(V, dtype=torch.bool)
    for p in parts:
        m[list(layout_parts[p])] = True
    return m


def combo_joint_masks(layout_parts, V: int) -> torch.Tensor:
    """(20, V) bool joint masks of the combinations."""
    return torch.stack([parts_joint_mask(layout_parts, c, V) for c in COMBOS])


def coalition_inputs(x: torch.Tensor, baseline: torch.Tensor, joint_mask: torch.Tensor) -> torch.Tensor:
    """Baseline everywhere, the sample's real coordinates at the masked joints (all frames,
    coordinates and persons)."""
    return torch.where(joint_mask.to(x.device).view(1, 1, 1, -1, 1), x, baseline.to(x).unsqueeze(0))


def draw_coalitions(gen, naive: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(T, S): |T| ~ U{2,3}, T uniform; unless naive, |S| ~ U{0..5-|T|} and S uniform among
    the parts outside T."""
    sT = _randint(2, 3, gen)
    T = tuple(sorted(torch.randperm(N_PARTS, generator=gen)[:sT].tolist()))
    if naive:
        return T, None
    s = _randint(0, N_PARTS - sT, gen)
    comp = [p for p in range(N_PARTS) if p not in T]
    S = tuple(sorted(comp[i] for i in torch.randperm(len(comp), generator=gen)[:s].tolist()))
    return T, S


def coalition_probability(T, S) -> float:
    """P(S | T) under ``draw_coalitions``: 1/(n) * 1/C(n-1, |S|), n = 6 - |T|."""
    n = N_PARTS + 1 - len(T)
    return 1.0 / n / math.comb(n - 1, len(S))


def update_value(dv: torch.Tensor, joints_T: int, clip: bool = True) -> torch.Tensor:
    """10 ReLU(dv) / joints(T) (the official normalisation before the EMA)."""
    return 10.0 * (dv.clamp_min(0) if clip else dv) / joints_T


def ema_decay(epoch: int, ema: float = 0.9, naive_estimate_epoch: int = 5) -> float:
    """0 (overwrite) up to and including ``naive_estimate_epoch``, ``ema`` after."""
    return ema if epoch > naive_estimate_epoch else 0.0


def ema_update(table: torch.Tensor, y: torch.Tensor, k: int | slice, w: torch.Tensor, decay: float,
               mode: str = "per_sample") -> torch.Tensor:
    """New table after the batch's EMA on column k (w: (N,)) or on the columns ``k`` selects
    (a slice; w: (N, K), every column updated independently). ``per_sample``: the official
    sequential loop over the batch (closed form per class); ``per_class``: one step with the
    class mean."""
    out = table.clone()
    y, w = y.cpu(), w.detach().to(table)
    for c in torch.unique(y).tolist():
        ws = w[(y == c).nonzero().flatten().to(w.device)]
        m = len(ws)
        old = out[c, k]
        if mode == "per_class":
            out[c, k] = decay * old + (1 - decay) * ws.mean(0)
        else:
            pw = decay ** torch.arange(m - 1, -1, -1, dtype=table.dtype, device=table.device)
            pw = pw.view(-1, *[1] * (ws.dim() - 1))  # (m,) or (m, 1) against ws (m,) / (m, K)
            out[c, k] = decay ** m * old + (1 - decay) * (pw * ws).sum(0)
    return out


def partner_is_minority(y: torch.Tensor, y_partner: torch.Tensor, class_counts: torch.Tensor,
                        rule: str = "counts") -> torch.Tensor:
    """(N,) bool. ``counts``: n[y_p] < n[y]; ``index``: the official C - y priority, y_p > y."""
    if rule == "index":
        return y_partner > y
    n = class_counts.to(y.device)
    return n[y_partner] < n[y]


def guided_combos(table: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor,
                  minor: torch.Tensor, temperature: float, gen) -> torch.Tensor:
    """(N,) pasted combination: c ~ softmax(table[y_partner]/t) when the partner is the
    minority, else complement(c) with c ~ softmax(table[y]/t)."""
    src = torch.where(minor, y_partner, y)
    P = torch.softmax(table[src.to(table.device)] / temperature, dim=1)
    c = torch.multinomial(P.cpu(), 1, generator=gen).flatten().to(y.device)
    return torch.where(minor, c, 19 - c)


def exact_combination_values(value_fn: Callable[[frozenset], torch.Tensor],
                             clip: bool = False) -> torch.Tensor:
    """Exact value of every combination T as the merged player of the reduced
    (6 - |T|)-player game: sum over S in the complement of |S|! (n-1-|S|)! / n! times
    (v(S u T) - v(S)) (ReLU-clipped when ``clip``, i.e. the expectation of the clipped online
    estimate). ``value_fn(parts)`` returns a tensor (e.g. per-sample values). Returns (20, ...)."""
    out = []
    for T in COMBOS:
        comp = [p for p in range(N_PARTS) if p not in T]
        n = len(comp) + 1
        acc = 0.0
        for s in range(len(comp) + 1):
            for S in itertools.combinations(comp, s):
                dv = value_fn(frozenset(S) | frozenset(T)) - value_fn(frozenset(S))
                if clip:
                    dv = dv.clamp_min(0)
                acc = acc + math.factorial(s) * math.factorial(n - 1 - s) / math.factorial(n) * dv
        out.append(torch.as_tensor(acc))
    return torch.stack(out)


# ----------------------------------------------------------------------------- Grad-CAM guidance
def check_gradcam_model(model) -> None:
    """Grad-CAM needs the last block's map before pooling: the model contract
    ``features`` -> (N, M, K, T', V), ``pool``, ``head``."""
    if not all(callable(getattr(model, n, None)) for n in ("features", "pool", "head")):
        raise BenchmarkError(f"shap_mix: guidance=gradcam needs a backbone with features()/pool()/"
                             f"head() (the last GCN block's map), {type(model).__name__} has none")


def gradcam_joint_saliency(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, V) Grad-CAM saliency of the true class per joint: eval mode, cam of the last map
    (mean-convention alpha, unnormalised), summed over T' and the persons present in x."""
    check_gradcam_model(model)
    was = model.training
    model.eval()  # BN running statistics read, never updated; no dropout
    try:
        with torch.no_grad(), fp32(x.device):  # the guidance's numbers: fp32 at any precision
            a = model.features(x.float())
        N, _, _, V, M = x.shape
        if a.dim() != 5 or tuple(a.shape[:2]) != (N, M) or a.shape[-1] != V:
            raise BenchmarkError(f"shap_mix: guidance=gradcam needs features() -> (N, M, K, T', V)"
                                 f" = ({N}, {M}, K, T', {V}), got {tuple(a.shape)}")
        cam = grad_cam(a, lambda f: model.head(model.pool(f)), y, normalize=False)  # (N, M, T', V)
    finally:
        model.train(was)
    present = x.ne(0).flatten(1, 3).any(1).to(cam.dtype)  # (N, M): zero-padded persons out
    return (cam * present[:, :, None, None]).float().sum(dim=(1, 2))


def gradcam_combination_values(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, 20) share of each clip's joint saliency (N, V) held by each combination's joints
    (masks (20, V)); 0 for a clip with no saliency at all."""
    total = saliency.sum(1, keepdim=True)
    tiny = torch.finfo(saliency.dtype).tiny
    share = torch.where(total > 0, saliency / total.clamp_min(tiny), 0.0)
    return share @ masks.to(share).t()


# ----------------------------------------------------------------------------- the method
@register_method("shap_mix")
class ShapMix(STMix):
    """Shapley-guided ST-Mix with logit adjustment (tau 1) on the clean and mixed terms."""

    display_name = "Shap-Mix"
    family = "augmentation (ours)"
    paper = "Zhang et al., IJCAI 2024"
    order = 210

    @dataclass(frozen=True)
    class HParams(STMix.HParams):
        logit_adjust: float = 1.0        # LogitAdjust tau = 1 on both terms (official LT script)
        temperature: float = 0.2         # skelemix sampler softmax(row / 0.2)
        ema: float = 0.9                 # update_part_dist
        naive_estimate_epoch: int = 5    # v(T) - v(empty) before; decay 0 up to and incl. this
        naive_mix_epoch: int = 5         # random ST-Mix before
        estimate_every: int = 1          # Table 13 Iter-n (official hard-coded 1)
        ema_mode: str = "per_sample"     # official sequential loop; "per_class"
        minority: str = "counts"         # "index": official C - y proxy
        guidance: str = "shapley"        # Table 8: "gradcam" | "random"
        rw_rs: str = "rw"                # Table 8: "rs" = class-balanced aux partners
        baseline: str = "raw_mean"       # official avg_motion; "batch_mean": epoch-0 batch mean

    @classmethod
    def schedule_hparams(cls, epochs: int) -> dict:
        """The warm-up (naive estimator, random mixing) is 5 of the official 100 epochs: on a
        shorter schedule it keeps that share, at least one epoch."""
        warm = max(1, round(0.05 * epochs))
        return {} if warm == cls.HParams.naive_estimate_epoch else {
            "naive_estimate_epoch": warm, "naive_mix_epoch": warm}

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        hp = self.hp
        check_choice("shap_mix", "ema_mode", hp.ema_mode, ("per_sample", "per_class"))
        check_choice("shap_mix", "minority", hp.minority, ("counts", "index"))
        check_choice("shap_mix", "guidance", hp.guidance, ("shapley", "gradcam", "random"))
        check_choice("shap_mix", "rw_rs", hp.rw_rs, ("rw", "rs"))
        check_choice("shap_mix", "baseline", hp.baseline, ("raw_mean", "batch_mean"))
        if hp.estimate_every < 1 or hp.temperature <= 0:
            raise BenchmarkError("shap_mix: estimate_every must be >= 1 and temperature > 0")
        if len(self.parts) != N_PARTS:
            raise BenchmarkError("shap_mix needs a layout with 5 body parts")
        self.counts = ctx.class_counts.cpu()
        self.table = torch.full((ctx.num_classes, len(COMBOS)), 1e-6)
        self.part_sizes = [len(p) for p in self.parts]
        self.base_sum: torch.Tensor | None = None
        self.base_n = 0
        self.epoch, self.batch_idx = 0, 0

    def stages(self, ctx: Context) -> list[Stage]:
        return [Stage(aux_sampler="class_balanced")] if self.hp.rw_rs == "rs" else [Stage()]

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        if self.hp.guidance == "gradcam":
            check_gradcam_model(model)  # fail before the first step, not mid-epoch
        self.epoch, self.batch_idx = epoch, 0

    # state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"table": self.table.clone(), "base_sum": self.base_sum, "base_n": self.base_n,
                "epoch": self.epoch, "batch_idx": self.batch_idx}

    def load_state_dict(self, state: dict) -> None:
        self.table = state["table"].clone()
        self.base_sum, self.base_n = state["base_sum"], int(state["base_n"])
        self.epoch, self.batch_idx = int(state["epoch"]), int(state["batch_idx"])

    # estimator -------------------------------------------------------------------------
    def baseline(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        raw = ctx.extras.get("raw_mean_clip")
        if self.hp.baseline == "raw_mean" and raw is not None and self.base_sum is None:
            # official: mean of the raw LT training clips, frames 0..window-1 (computed once)
            self.base_sum, self.base_n = torch.from_numpy(raw(x.shape[2])), 1
            if tuple(self.base_sum.shape) != tuple(x.shape[1:]):
                raise BenchmarkError(f"shap_mix: raw mean clip {tuple(self.base_sum.shape)} does not "
                                     f"match the input {tuple(x.shape[1:])}; use baseline=batch_mean")
        if self.base_n and self.hp.baseline == "raw_mean" and raw is not None:
            return (self.base_sum / self.base_n).to(x)
        if self.epoch == 0:  # running mean of the epoch-0 batches (all ranks agree)
            m = ctx.all_reduce_mean(x.float().mean(0)).float().cpu()
            self.base_sum = m if self.base_sum is None else self.base_sum + m
            self.base_n += 1
        if self.base_sum is None:
            raise BenchmarkError("shap_mix: no baseline (resumed past epoch 0 without one)")
        return (self.base_sum / self.base_n).to(x)

    def estimate(self, model, x: torch.Tensor, y: torch.Tensor, base: torch.Tensor,
                 ctx: Context) -> dict:
        hp = self.hp
        naive = self.epoch < hp.naive_estimate_epoch
        T, S = draw_coalitions(ctx.generator, naive)
        V, N = x.shape[3], len(y)
        with_inp = coalition_inputs(x, base, parts_joint_mask(self.parts, T + (S or ()), V))
        # S empty (the warm-up estimator, or |S| = 0): v(S) is the pure baseline's value for
        # every clip, one row instead of N (the eval forward treats each clip alone)
        without = (coalition_inputs(x, base, parts_joint_mask(self.parts, S, V)) if S
                   else base.unsqueeze(0))
        # the estimator's numbers: an fp32 forward whatever the training precision
        prob = torch.softmax(fp32_eval_forward(ctx, model, torch.cat([with_inp, without])), 1)
        v_with = prob[torch.arange(N), y]
        v_without = prob[N + torch.arange(N), y] if S else prob[N, y]
        k = combo_index(T)
        w = update_value(v_with - v_without, sum(self.part_sizes[p] for p in T))
        d = ema_decay(self.epoch, hp.ema, hp.naive_estimate_epoch)
        self.table = ema_update(self.table, y, k, w.cpu(), d, hp.ema_mode)
        return {"T": T, "S": S, "k": k, "w": w}

    def estimate_gradcam(self, model, x: torch.Tensor, y: torch.Tensor, ctx: Context) -> dict:
        """Grad-CAM values of all 20 combinations per clip, EMA'd into every column."""
        masks = combo_joint_masks(self.parts, x.shape[3])
        f = gradcam_combination_values(gradcam_joint_saliency(model, x, y), masks.to(x.device))
        w = update_value(f.cpu(), masks.sum(1).float())  # 10 share / joints(k), (N, 20)
        d = ema_decay(self.epoch, self.hp.ema, self.hp.naive_estimate_epoch)
        self.table = ema_update(self.table, y, slice(None), w, d, self.hp.ema_mode)
        return {"w": w}

    # the step ---------------------------------------------------------------------------
    @torch.no_grad()
    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        hp = self.hp
        x, y = batch.x, batch.y
        N, _, T, V, _ = x.shape
        meta: dict = {}
        if hp.guidance == "shapley":
            base = self.baseline(x, ctx)  # every batch: the batch_mean baseline accumulates
        if hp.guidance != "random" and (self.epoch < hp.naive_mix_epoch
                                        or self.batch_idx % hp.estimate_every == 0):
            meta["estimate"] = (self.estimate(model, x, y, base, ctx) if hp.guidance == "shapley"
                                else self.estimate_gradcam(model, x, y, ctx))
        self.batch_idx += 1
        rs = hp.rw_rs == "rs"
        source = batch.aux.x if rs else None
        y_src = batch.aux.y if rs else y
        if self.epoch < hp.naive_mix_epoch:  # random ST-Mix
            d = self.draw(N, T, ctx.generator)
            partner = torch.arange(N) if rs else d["partner"]
            x_mix, partner, lam = st_mix_apply(x, partner, self.joints_of(d["parts"], V), d["Ct"],
                                               d["a"], d["Ct2"], d["b"], d["branch"], d["lam"],
                                               source=source)
            branch = d["branch"]
        else:
            if hp.guidance != "random":
                self.table = ctx.all_reduce_mean(self.table).float().cpu()
            x_mix, partner, lam, branch = self.guided_mix(x, y, y_src, source, ctx)
        partner = partner.to(y.device)
        meta.update(partner=partner, lam=lam, branch=branch)
        return dataclasses.replace(
            batch, inputs=[x, x_mix],
            targets=[Target(y), Target(y, y_src[partner], lam.to(y.device))],
            meta={**batch.meta, **meta})

    def guided_mix(self, x, y, y_src, source, ctx: Context):
        hp, gen = self.hp, ctx.generator
        N, _, T, V, _ = x.shape
        partner, _ = draw_partner(N, hp.pairing, gen)
        if source is not None:
            partner = torch.arange(N)
        partner = partner.to(x.device)
        nseg, lo, hi = segment_bounds(T, hp.ct_min, hp.ct_max, hp.ct_ref)
        Ct = _randint(lo, hi, gen)
        a = _randint(0, nseg - Ct, gen)
        u = float(torch.rand((), generator=gen))
        if u <= hp.mixup_prob:
            lam = float(torch.rand((), generator=gen))
            x_mix, partner, lam_t = st_mix_apply(x, partner, (), Ct, a, None, None, "mixup", lam,
                                                 source=source)
            return x_mix, partner, lam_t, "mixup"
        Ct2 = _randint(Ct, nseg, gen)
        b = _randint(0, nseg - Ct2, gen)
        yp = y_src[partner.to(y_src.device)].to(y.device)
        if hp.guidance == "random":
            combos = torch.randint(0, len(COMBOS), (N,), generator=gen).to(y.device)
        else:
            minor = partner_is_minority(y, yp, self.counts, hp.minority)
            combos = guided_combos(self.table, y, yp, minor, hp.temperature, gen)
        jm = combo_joint_masks(self.parts, V).to(x.device)[combos.to(x.device)]  # (N, V)
        x_mix = paste(x, partner, a, Ct, Ct2, b, jm, source=source)
        lam = (Ct * jm.sum(1).float() / (nseg * V))
        return x_mix, partner, lam, "cutmix"
