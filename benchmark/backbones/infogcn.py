"""InfoGCN (Chi et al., "InfoGCN: Representation Learning for Human Skeleton-based Action
Recognition", CVPR 2022): self-attention graph convolutions on a "k-th mode" joint embedding,
and a variational latent z decoded by a linear classifier, trained against a class prior.

It computes what ``model/infogcn.py:InfoGCN`` of stnoah1/infogcn computes with the arguments of
its ``main.py`` (``n_heads=3``, ``z_prior_gain=3``, ``noise_ratio=0.5``; ``k=1`` as the README's
example), with the same initialisation and random stream and exactly the official ``state_dict``
keys and shapes, so official checkpoints load with ``strict=True`` and give the same logits
(``scripts/check_infogcn_official.py``). 1,572,227 parameters on NTU-120 (1,556,807 on NTU-60).

    x      <- (I - A_out^k) x          per frame, A_out: the official directed joint tree
    h      =  data_bn(W x + pos)        joint embedding to base_channel, learned joint positions
    l1..l9 :  ReLU(MS-TCN(SA-GC(h)) + residual(h))   widths base x (1,1,1,2,2,2,4,4,4)
    SA-GC  :  sum_i conv_d_i(x (softmax(q_i k_i^T / sqrt(d)) * topology_i)), BN, + down(x), ReLU
    head   :  f = ReLU(fc_hidden(pool)); z = mu(f) + eps * exp(noise_ratio * logvar(f)) (train;
              eval: z = mu, as official), logits = fc(z)

Names. The backbone contract makes ``fc`` the classifier (methods replace it, ``is_classifier``
names it); the official ``fc`` is the hidden layer before the latent and its classifier is
``decoder``. So the modules are ``fc_hidden`` (official ``fc``) and ``fc`` (official
``decoder``), and two state-dict hooks rename them: ``state_dict()`` / ``load_state_dict()``
speak the official names (checkpoints, ``last.pt``), ``named_parameters()`` the contract's.

The training objective (official ``main.py``): label-smoothed CE on the logits (here: whatever
loss the method uses) + ``lambda_2`` * MMD + ``lambda_1`` * |mean z|, with

    MMD = mse(class means of z, z_prior rows) over the classes present in the batch
    |mean z| = L2 norm of the batch mean of z

``aux_losses(y)`` returns those two terms, weighted, from the latents of the training forwards
since its previous call; the harness adds them to every method's loss (``benchmark.train``).
Soft labels (N, C) of mixing methods give label-weighted class means
``sum_i p_ic z_i / sum_i p_ic`` over the classes with positive mass, which is exactly the
official mean for one-hot labels. ``z_prior`` is a fixed random orthogonal (C, 4*base) matrix
x ``gain``, as official a function of the init seed and not in the state_dict (a resumed run
rebuilds it from the same seed). Under DDP each rank's terms see its own share of the batch
(the official code computes them over the whole batch in one process).

Where the official code loops, ours batches (same maths, only the summation order differs):
the joint mode and the embedding run on the 3-channel input in the data_bn layout (no
rearrange round trips); SA-GC aggregates the joints of all heads in one batched GEMM
(``(NT, H*V, V) @ (NT, V, C)``) and runs the three ``conv_d`` as one conv over the heads'
concatenated channels; the temporal block is CTR-GCN's fused one (``ctrgcn``, same module
layout as the official ``ms_tcn``) plus the official trailing ReLU. The official ``A_vector``
is float64 and multiplies float32 input (it only runs under apex O1's autocast); ours is the
same integer matrix in float32.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BenchmarkError
from . import BACKBONES
from .ctrgcn import (MultiScaleTemporalConv, UnitTCN, bn_init, conv_init,  # noqa: F401
                     load_checkpoint_file, load_official_state_dict)  # (re-exported loaders)
from .graph import infogcn_outward, layout_name

__all__ = ["InfoGCN", "LatentHead", "EncodingBlock", "SAGC", "load_checkpoint_file",
           "load_official_state_dict"]

# (width multiple of base_channel, temporal stride) of l1..l9 (official 64 x ...)
LAYERS = ((1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))
NUM_HEAD = 3          # main.py --n_heads
NOISE_RATIO = 0.5     # main.py --noise_ratio (the class default 0.1 is overridden)
Z_PRIOR_GAIN = 3      # main.py --z_prior_gain
K_MODE = 1            # README example --k=1 (args.py's 0 gives I - A^0 = 0: the input vanishes)
LAMBDA_1 = 1e-4       # main.py --lambda_1: weight of |mean z|
LAMBDA_2 = 1e-1       # main.py --lambda_2: weight of the MMD term
MAX_PENDING = 8       # latents kept for aux_losses: bounds a loop that never asks for them

# our module names -> the official state_dict names (applied to the leading component)
_TO_OFFICIAL = {"fc_hidden": "fc", "fc": "decoder"}
_FROM_OFFICIAL = {v: k for k, v in _TO_OFFICIAL.items()}


def conv_branch_init(conv: nn.Conv2d, branches: int) -> None:
    """The official init of ``conv_d``: N(0, 2 / (C_out * C_in * k * branches)), bias 0."""
    n, k1, k2 = conv.weight.shape[:3]
    nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / (n * k1 * k2 * branches)))
    nn.init.constant_(conv.bias, 0)


def check_width(channels: int) -> None:
    # the attention embeds into channels // 8; the temporal block has 4 branches
    if channels < 8 or channels % 4:
        raise BenchmarkError(f"infogcn: block width {channels} must be a multiple of 4 and >= 8 "
                             f"(attention width C // 8, four temporal branches)")


def joint_mode(graph: str, k: int) -> torch.Tensor:
    """The official ``A_vector = I - A_out^k`` (V, V), float32 (its entries are integers)."""
    if not isinstance(k, int) or k < 1:
        raise BenchmarkError(f"infogcn: k must be an integer >= 1 (k = 0 makes I - A^0 = 0, "
                             f"which zeroes the input), got {k!r}")
    a = infogcn_outward(graph).astype(np.float64)
    return torch.from_numpy(np.eye(len(a)) - np.linalg.matrix_power(a, k)).float()


# ----------------------------------------------------------------------------- blocks
class SelfAttention(nn.Module):
    """Per-frame joint attention of every head: softmax(q k^T / sqrt(d)), q, k = to_qk(LN(x))."""

    def __init__(self, in_channels: int, hidden_dim: int, n_heads: int):
        super().__init__()
        self.scale = hidden_dim ** -0.5
        self.n_heads, self.hidden_dim = n_heads, hidden_dim
        self.to_qk = nn.Linear(in_channels, 2 * hidden_dim * n_heads)
        self.ln = nn.LayerNorm(in_channels)
        nn.init.normal_(self.to_qk.weight, 0, 1)

    def forward(self, xt: torch.Tensor) -> torch.Tensor:
        """xt: (N, T, V, C) -> attention (N*T, H, V, V)."""
        n, t, v, _ = xt.shape
        h, d = self.n_heads, self.hidden_dim
        qk = self.to_qk(self.ln(xt)).view(n * t, v, 2, h, d)
        q = qk[:, :, 0].transpose(1, 2)                    # (NT, H, V, d)
        k = qk[:, :, 1].permute(0, 2, 3, 1)                # (NT, H, d, V)
        return torch.matmul(q, k).mul_(self.scale).softmax(dim=-1)


class SAGC(nn.Module):
    """Self-attention graph convolution (official ``SA_GC``), heads batched."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor):
        super().__init__()
        self.num_head = h = a.shape[0]
        self.shared_topology = nn.Parameter(a.clone())
        # Constructed and initialised in the official order (same random stream).
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(h))
        self.down = None
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                      nn.BatchNorm2d(out_channels))
        self.bn = nn.BatchNorm2d(out_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1)
        bn_init(self.bn, 1e-6)
        for conv in self.conv_d:
            conv_branch_init(conv, h)
        self.attn = SelfAttention(in_channels, in_channels // 8, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        h = self.num_head
        xt = x.permute(0, 2, 3, 1).contiguous()                          # (N, T, V, C)
        adj = self.attn(xt) * self.shared_topology                       # (NT, H, V, V)
        # sum_v adj[h, u, v] x[v, c] for every head at once: (NT, H*V, V) @ (NT, V, C)
        z = torch.bmm(adj.view(n * t, h * v, v), xt.view(n * t, v, c))
        z = z.view(n, t, h, v, c).permute(0, 2, 4, 1, 3).reshape(n, h * c, t, v)
        y = F.conv2d(z, torch.cat([m.weight for m in self.conv_d], 1),
                     sum(m.bias for m in self.conv_d))
        y = self.bn(y)  # BN backward needs its input, not its output: add in place
        y = y.add_(x if self.down is None else self.down(x))
        return F.relu_(y)


class TemporalBlock(MultiScaleTemporalConv):
    """The official ``MultiScale_TemporalConv(C, C, kernel_size=5, dilations=[1, 2],
    residual=False)``: CTR-GCN's module layout and (fused) maths, plus the trailing ReLU, and
    PyTorch's default initialisation (the official class re-initialises nothing)."""

    def __init__(self, channels: int, stride: int = 1):
        # CTR-GCN's constructor re-draws the weights (its weights_init): run it on a forked
        # random stream, then redraw the defaults in construction order, as the official
        # modules' own constructors did
        with torch.random.fork_rng(devices=[]):
            super().__init__(channels, stride)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(super().forward(x))  # a fresh BN (or cat) output


class EncodingBlock(nn.Module):
    """y = ReLU(tcn(agcn(x)) + residual(x)); residual: identity, or a strided 1x1 conv + BN."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, stride: int = 1):
        super().__init__()
        self.agcn = SAGC(in_channels, out_channels, a)
        self.tcn = TemporalBlock(out_channels, stride)
        self.residual = None
        if in_channels != out_channels or stride != 1:
            self.residual = UnitTCN(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.agcn(x))  # ReLU's output: autograd keeps it, so add out of place
        return F.relu_(y + (x if self.residual is None else self.residual(x)))


# ----------------------------------------------------------------------------- model
@BACKBONES.register("infogcn")
class InfoGCN(nn.Module):
    """InfoGCN on (N, C, T, V, M) skeletons; every person runs through the blocks alone.

    The backbone contract (``benchmark.backbones``): ``stem`` (joint mode, embedding, data_bn),
    ``blocks`` l1..l9, ``features`` -> (N, M, 4*base, T/4, V), ``pool`` -> (N, feat_dim),
    ``head`` (hidden layer, latent z, ``fc``), ``aux_losses(y)``.

    Args:
        num_class: number of classes.
        num_point: joints V; must match the graph.
        num_person: persons M (sizes data_bn: M*V*base channels).
        graph: 'ntu' (25 joints) or 'ucla' (20): the official InfoGCN graphs.
        in_channels: coordinates per joint.
        base_channel: embedding width and width of l1..l3 (64 is the official model, which
            hard-codes it; 8/16/32 for CPU profiles).
        drop_out: dropout after the hidden layer (0 in the official main.py).
        num_head: attention heads (main.py --n_heads 3).
        noise_ratio: the latent's std is exp(noise_ratio * logvar) in training (main.py 0.5).
        k: the joint mode, x <- (I - A^k) x (README example 1).
        gain: z_prior = gain x a random orthogonal matrix (main.py --z_prior_gain 3).
        lambda_1, lambda_2: weights of |mean z| and of the MMD term (main.py 1e-4, 1e-1).
    """

    head_names = ("fc_hidden", "fc_mu", "fc_logvar", "fc")   # the contract: what only head uses

    def __init__(self, num_class: int = 60, num_point: int = 25, num_person: int = 2,
                 graph: str = "ntu", in_channels: int = 3, base_channel: int = 64,
                 drop_out: float = 0, num_head: int = NUM_HEAD, noise_ratio: float = NOISE_RATIO,
                 k: int = K_MODE, gain: float = Z_PRIOR_GAIN, lambda_1: float = LAMBDA_1,
                 lambda_2: float = LAMBDA_2):
        super().__init__()
        a_vector = joint_mode(graph, k)
        if a_vector.shape[0] != num_point:
            raise BenchmarkError(f"graph {graph!r} has {a_vector.shape[0]} joints, num_point={num_point}")
        if not isinstance(base_channel, int) or base_channel < 8 or base_channel % 8:
            raise BenchmarkError(f"infogcn: base_channel must be a multiple of 8 (official 64), "
                                 f"got {base_channel!r}")
        if not isinstance(num_head, int) or num_head < 1:
            raise BenchmarkError(f"infogcn: num_head must be an integer >= 1, got {num_head!r}")
        self.num_class, self.num_point, self.num_person = num_class, num_point, num_person
        self.graph, self.in_channels, self.base_channel = layout_name(graph), in_channels, base_channel
        self.noise_ratio, self.k, self.gain = noise_ratio, k, gain
        self.lambda_1, self.lambda_2 = lambda_1, lambda_2
        self.feat_dim = d = LAYERS[-1][0] * base_channel
        self.num_head = num_head
        self._pending: list[torch.Tensor] = []  # latents of training forwards (aux_losses)

        # Constructed in the official order, so a seeded model draws the same random stream.
        self.data_bn = nn.BatchNorm1d(num_person * base_channel * num_point)
        self.register_buffer("z_prior", torch.empty(num_class, d), persistent=False)
        self.register_buffer("A_vector", a_vector, persistent=False)
        self.to_joint_embedding = nn.Linear(in_channels, base_channel)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_point, base_channel))
        a = torch.from_numpy(np.stack([np.eye(num_point, dtype=np.float32)] * num_head))
        c_in = base_channel
        for i, (mult, stride) in enumerate(LAYERS):
            check_width(mult * base_channel)
            setattr(self, f"l{i + 1}", EncodingBlock(c_in, mult * base_channel, a, stride))
            c_in = mult * base_channel
        build_latent_layers(self, d, num_class, gain)
        bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_out) if drop_out else nn.Identity()
        self.register_state_dict_post_hook(_to_official_keys)
        self.register_load_state_dict_pre_hook(_from_official_keys)

    def __getstate__(self) -> dict:
        # pending latents carry autograd graphs (no deepcopy, no pickle): never copied
        return {**self.__dict__, "_pending": []}

    # ------------------------------------------------------------------ the contract
    def block_names(self) -> list[str]:
        return [f"l{i}" for i in range(1, len(LAYERS) + 1)]

    def blocks(self) -> list[nn.Module]:
        """l1..l9, read at call time (RIDE swaps some for identities)."""
        return [getattr(self, name) for name in self.block_names()]

    def make_blocks(self, start: int, width: float = 1.0) -> tuple[list[nn.Module], int]:
        """Fresh copies of blocks ``start..`` (0-based) with widths scaled by ``width`` (the
        optional contract extension for RIDE's narrower experts); returns (blocks, channels)."""
        if not 1 <= start < len(LAYERS):
            raise BenchmarkError(f"infogcn: make_blocks start must be in 1..{len(LAYERS) - 1}")
        a = torch.from_numpy(np.stack([np.eye(self.num_point, dtype=np.float32)] * self.num_head))
        blocks, c_in = [], self.base_channel * LAYERS[start - 1][0]
        for mult, stride in LAYERS[start:]:
            c_out = int(self.base_channel * mult * width)
            check_width(c_out)
            blocks.append(EncodingBlock(c_in, c_out, a, stride))
            c_in = c_out
        return blocks, c_in

    def make_head(self, feat_dim: int) -> "LatentHead":
        """A fresh head for ``feat_dim``-wide pooled features (the optional contract extension
        for methods that build several heads, RIDE's experts): this model's latent head and
        objective (``aux_losses``) at that width, with its own z_prior."""
        return LatentHead(feat_dim, self.num_class, self.noise_ratio, self.gain,
                          self.lambda_1, self.lambda_2, self.drop_out)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> (N*M, base, T, V): joint mode, embedding + positions, data_bn."""
        n, c, t, v, m = x.shape
        b = self.base_channel
        xs = x.permute(0, 4, 3, 1, 2)                                     # (N, M, V, C, T)
        # (I - A^k) over the joints, on the 3-channel input: (V, V) @ (N, M, V, C*T)
        xs = torch.matmul(self.A_vector.to(x.dtype), xs.reshape(n, m, v, c * t))
        # the embedding straight into data_bn's channel order m*V*base + v*base + c
        h = torch.matmul(self.to_joint_embedding.weight, xs.view(n, m, v, c, t))  # (N, M, V, b, T)
        h = h + (self.to_joint_embedding.bias + self.pos_embedding[0, :v]).view(1, 1, v, b, 1)
        h = self.data_bn(h.view(n, m * v * b, t))
        return h.view(n, m, v, b, t).permute(0, 1, 3, 4, 2).reshape(n * m, b, t, v)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> the last block's map (N, M, 4*base, T/4, V)."""
        n = x.shape[0]
        x = self.stem(x)
        for block in self.blocks():
            x = block(x)
        return x.view(n, -1, *x.shape[1:])

    def pool(self, feat_map: torch.Tensor) -> torch.Tensor:
        """Mean over time and joints, then over persons (padded persons included, as official)."""
        return feat_map.flatten(3).mean(3).mean(1)

    def latent(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, mu, logvar) of pooled features: z = mu + eps exp(noise_ratio logvar) in training
        (std clamped at 100, eps ~ N(0, 1) from the global generator), z = mu in eval."""
        f = self.drop_out(F.relu(self.fc_hidden(feat)))
        mu, logvar = self.fc_mu(f), self.fc_logvar(f)
        if not self.training:
            return mu, mu, logvar
        std = torch.clamp(logvar.mul(self.noise_ratio).exp(), max=100)
        return torch.randn_like(std).mul(std).add(mu), mu, logvar

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        """Pooled features -> logits (``fc`` of the latent z). A training forward with
        gradients records z for :meth:`aux_losses`."""
        z = self.latent(feat)[0]
        if self.training and torch.is_grad_enabled():
            self._pending = self._pending[1 - MAX_PENDING:] + [z]
        return self.fc(z)

    def forward(self, x: torch.Tensor, return_feat: bool = False) -> Any:
        feat = self.pool(self.features(x))
        logits = self.head(feat)
        return (logits, feat) if return_feat else logits

    # ------------------------------------------------------------------ the objective
    def aux_losses(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """InfoGCN's latent terms of the training forwards since the previous call (their
        latents concatenated in call order; consumed): {"infogcn_mmd": lambda_2 * MMD,
        "infogcn_z_mean": lambda_1 * |mean z|}, or {} when none ran (eval, no grad).

        Args:
            y: the labels of those rows: (R,) class indices or (R, C) soft labels. When the
                latents have k * R rows (one forward over k stacked views of the batch, as
                BCL's), y is repeated k times.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return {}
        z = torch.cat(pending)
        z = z.to(torch.promote_types(z.dtype, torch.float32))  # fp32 at least (AMP)
        if len(y) == 0 or len(z) % len(y):
            raise BenchmarkError(f"infogcn: the training forwards of this step gave {len(z)} latent "
                                 f"rows, but the labels have {len(y)}: aux_losses needs one label "
                                 f"row per latent row (or per stacked view)")
        y = y.repeat(len(z) // len(y), *([1] * (y.dim() - 1)))
        mmd, z_norm = latent_prior_terms(z, y, self.z_prior)
        return {"infogcn_mmd": self.lambda_2 * mmd, "infogcn_z_mean": self.lambda_1 * z_norm}


def build_latent_layers(module: nn.Module, d: int, num_class: int, gain: float) -> None:
    """The head's layers on ``module`` in the official order and random stream: fc_hidden
    (official "fc"), fc_mu, fc_logvar, fc (official "decoder"), then the registered z_prior
    (gain x orthogonal), Xavier (ReLU gain) hidden / mu / logvar weights, N(0, 2/C) fc weight."""
    module.fc_hidden, module.fc_mu, module.fc_logvar = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
    module.fc = nn.Linear(d, num_class)
    nn.init.orthogonal_(module.z_prior, gain=gain)
    for m in (module.fc_hidden, module.fc_mu, module.fc_logvar):
        nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))
    nn.init.normal_(module.fc.weight, 0, math.sqrt(2.0 / num_class))


class LatentHead(nn.Module):
    """InfoGCN's head on its own (``InfoGCN.make_head``): hidden layer, latent z, ``fc``, and
    the latent-vs-prior objective ``aux_losses``; the same code, initialisation order and
    z_prior rule (gain x a random orthogonal (C, feat_dim)) as the model's own head."""

    def __init__(self, feat_dim: int, num_class: int, noise_ratio: float, gain: float,
                 lambda_1: float, lambda_2: float, drop_out: nn.Module):
        super().__init__()
        d = feat_dim
        self.noise_ratio, self.lambda_1, self.lambda_2 = noise_ratio, lambda_1, lambda_2
        self._pending: list[torch.Tensor] = []
        self.register_buffer("z_prior", torch.empty(num_class, d), persistent=False)
        build_latent_layers(self, d, num_class, gain)
        self.drop_out = drop_out if isinstance(drop_out, nn.Identity) else nn.Dropout(drop_out.p)

    __getstate__ = InfoGCN.__getstate__
    latent = InfoGCN.latent
    head = InfoGCN.head
    aux_losses = InfoGCN.aux_losses

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.head(feat)


def latent_prior_terms(z: torch.Tensor, y: torch.Tensor, z_prior: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(MMD, |mean z|) of official ``loss.get_mmd_loss`` (unweighted), for hard or soft y.

    MMD = mean over the present classes c and dims of (zbar_c - z_prior_c)^2 with zbar_c the
    label-weighted mean of z (one-hot: the plain class mean); |mean z| = ||mean_i z_i||_2.
    """
    num_class = z_prior.shape[0]
    p = F.one_hot(y.long(), num_class).to(z) if y.dim() == 1 else y.to(z)   # (R, C)
    mass = p.sum(0)
    present = mass > 0
    means = (p.t() @ z)[present] / mass[present].unsqueeze(1)
    mmd = F.mse_loss(means, z_prior[present].to(z))
    return mmd, torch.linalg.vector_norm(z.mean(0), 2)


# ----------------------------------------------------------------------------- official names
def _rename(state: dict, prefix: str, table: dict[str, str]) -> None:
    """Rename, in place and in order, the keys under ``prefix`` whose first component after it
    is in ``table`` (the module's keys are contiguous, so order is kept by re-inserting all)."""
    keys = [k for k in state if k.startswith(prefix)]
    items = [(k, state.pop(k)) for k in keys]
    for k, v in items:
        head, _, rest = k[len(prefix):].partition(".")
        state[prefix + table.get(head, head) + ("." + rest if rest else "")] = v


def _to_official_keys(module: nn.Module, state: dict, prefix: str, local_metadata: Any) -> None:
    _rename(state, prefix, _TO_OFFICIAL)


def _from_official_keys(module: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    _rename(state, prefix, _FROM_OFFICIAL)
