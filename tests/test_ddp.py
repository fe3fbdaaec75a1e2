"""Multi-process training (DDP over gloo on CPU): sharding, gradient averaging, rank-0-only
writes, identical replicas, sharded evaluation and resume, via torchrun as a user runs it."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from benchmark.config import make_config
from benchmark.data.synth import load_synth
from benchmark.dist import DistInfo, batch_shards, process_group, state_digest
from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Method, Out
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer, local_batch, make_train_loader

REPO = Path(__file__).resolve().parents[1]


def make_store(base: Path) -> Path:
    return load_synth(base / "synth-cache", num_classes=6, train_per_class=40, test_per_class=6, T=70)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.getbasetemp())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ sharding, in process
@pytest.mark.parametrize("sampler", ["instance", "class_balanced"])
def test_rank_shards_split_each_global_batch(store, sampler):
    """Step k on ranks 0 and 1 (batch B/2 each) reads exactly the clips of step k of one process
    with batch B: disjoint halves of one global order. The harness builds its loaders with this
    function, with the process's rank and world size."""
    spec = normalise(RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40, profile="smoke",
                             train={"window": 32}))
    cfg = resolve_config(spec)
    data = load_run_data(spec, cfg)
    dev = torch.device("cpu")
    one = make_train_loader(data, cfg, 7, 0, sampler, {}, 1, dev)
    ranks = [make_train_loader(data, cfg, 7, 0, sampler, {}, 1, dev, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 3):
        for loader in (one, *ranks):
            loader.set_epoch(epoch)
        single = [idx.tolist() for _, _, idx in one]
        per_rank = [[idx.tolist() for _, _, idx in loader] for loader in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(single) > 1
        for k, whole in enumerate(single):
            a, b = per_rank[0][k], per_rank[1][k]
            assert len(a) == len(b) == cfg.batch_size // 2
            assert sorted(a + b) == sorted(whole)  # the same multiset of clips
            if sampler == "instance":  # a permutation: the halves are disjoint
                assert not set(a) & set(b)
    for loader in (one, *ranks):
        loader.close()


def test_global_batch_must_split_evenly():
    assert local_batch(64, 2) == 32
    with pytest.raises(BenchmarkError, match="batch_size 64 .* not divisible by the 3 DDP ranks"):
        local_batch(64, 3)


def test_eval_shards_are_whole_batches():
    shards = batch_shards(10, 3, 2)
    assert [s.tolist() for s in shards] == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9]]
    assert sorted(np.concatenate(batch_shards(36, 64, 2)).tolist()) == list(range(36))  # rank 1: none


def test_launcher_environment_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(BenchmarkError, match="nccl needs --device cuda"):
        with process_group(torch.device("cpu"), "nccl"):
            pass
    with pytest.raises(BenchmarkError, match="--dist-backend must be one of nccl, gloo"):
        with process_group(torch.device("cpu"), "mpi"):
            pass
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(BenchmarkError, match="RANK=2 WORLD_SIZE=2"):
        with process_group(torch.device("cpu")):
            pass


def test_cpu_ddp_keeps_batchnorm_and_says_so(caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with caplog.at_level("INFO"):
        out = DistInfo(world_size=2, backend="gloo").prepare_model(model)
    assert out is model and type(model[1]) is nn.BatchNorm2d  # torch's SyncBN is CUDA-only
    assert "SyncBatchNorm supports CUDA tensors only" in caplog.text


def test_single_process_needs_no_group():
    with process_group(torch.device("cpu")) as d:
        assert d == DistInfo() and not d.enabled
        assert d.all_reduce_mean(torch.tensor([1, 3])).tolist() == [1.0, 3.0]


# ------------------------------------------------------------------ DDP step == 1-process step
class Pooled(nn.Module):
    """No BatchNorm: per-rank batch statistics would make DDP differ from one process on CPU
    (torch's SyncBatchNorm is CUDA-only), and the point here is the sharding and averaging."""

    def __init__(self, num_class: int):
        super().__init__()
        self.body = nn.Linear(75, 16)
        self.fc = nn.Linear(16, num_class)

    def heads(self, x):
        feat = torch.tanh(self.body(x.mean(dim=(2, 4)).flatten(1)))
        return self.fc(feat), feat

    def forward(self, x, return_feat=False):
        logits, feat = self.heads(x)
        return (logits, feat) if return_feat else logits


class PooledCE(Method):
    """Calls the model's own method twice per step (as GLMC's ``all_heads``): both calls must be
    DDP forwards for the gradients to be averaged."""

    def build_model(self, ctx, make_backbone):
        return Pooled(ctx.num_classes)

    def forward(self, model, batch, ctx):
        half = len(batch.x) // 2
        (a, fa), (b, fb) = model.heads(batch.x[:half]), model.heads(batch.x[half:])
        return Out(torch.cat([a, b]), torch.cat([fa, fb]), chunks=[len(batch.x)])


def step_trainer(store: str, dist: DistInfo | None = None) -> Trainer:
    spec = normalise(RunSpec(dataset=store, method="ce", imbalance=10, n_max=40, profile="smoke", seed=2,
                             train={"epochs": 1, "max_steps_per_epoch": 2, "max_test_clips": 12,
                                    "window": 32, "warmup_epochs": 0, "milestones": [], "base_lr": 2.0}))
    cfg = resolve_config(spec)
    data = load_run_data(spec, cfg)
    data.train_transform = data.test_transform  # no random draws: both setups see equal inputs
    return Trainer(spec, cfg, data, torch.device("cpu"), method=PooledCE(), dist=dist)


def _ddp_worker(rank: int, port: int, store: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with process_group(torch.device("cpu")) as dist:
        t = step_trainer(store, dist)
        logits = t.fit()
        torch.save({"model": t.model.state_dict(), "logits": torch.from_numpy(logits),
                    "ctx": (t.ctx.rank, t.ctx.world_size, t.ctx.batch_size),
                    "mean": t.ctx.all_reduce_mean(torch.tensor([float(rank)]))}, f"{out}/rank{rank}.pt")
        if rank == 1:  # a replica that drifted must be caught on every rank
            with torch.no_grad():
                t.model.fc.bias.add_(1e-3)
        try:
            dist.check_replicas(t.model, "in the test")
            caught = "no"
        except BenchmarkError as e:
            caught = str(e)
        Path(f"{out}/caught{rank}").write_text(caught)
        t.close()


def test_two_rank_steps_equal_one_process_with_the_global_batch(store, tmp_path):
    ref = step_trainer(str(store))
    init = {k: v.clone() for k, v in ref.model.state_dict().items()}
    ref_logits = ref.fit()
    ref.close()
    mp.spawn(_ddp_worker, args=(free_port(), str(store), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["ctx"] == (0, 2, 16) and r1["ctx"] == (1, 2, 16)  # batch_size is the global batch
    assert r0["mean"].tolist() == [0.5] == r1["mean"].tolist()
    for k, v in ref.model.state_dict().items():
        assert torch.equal(r0["model"][k], r1["model"][k]), k  # replicas bitwise equal
        assert not torch.allclose(v, init[k], atol=1e-3), k  # two real SGD steps were taken
        assert torch.allclose(r0["model"][k], v, atol=1e-5, rtol=0), (k, (r0["model"][k] - v).abs().max())
    # sharded evaluation gathered on every rank = the single process's logits of those weights
    assert torch.allclose(r0["logits"], torch.from_numpy(ref_logits), atol=1e-5)
    assert torch.equal(r0["logits"], r1["logits"])
    for r in (0, 1):
        assert "DDP model replicas differ in the test" in (tmp_path / f"caught{r}").read_text()


# ------------------------------------------------------------------ torchrun, as a user runs it
def torchrun(store: Path, out: Path, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "benchmark", "train", "--dataset", str(store),
           "--method", "ce", "--imbalance", "10", "--n-max", "40", "--profile", "smoke",
           "--out", str(out), "--threads", "1", "--set", "window=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, text=True, **popen)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def without_timing(final: dict) -> dict:
    return {k: v for k, v in final.items() if k != "timing"}


@pytest.fixture(scope="module")
def ddp_run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-runs")
    stdout, _ = finish(torchrun(store, out, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    return run_dir, stdout


def test_torchrun_smoke_run(ddp_run):
    run_dir, stdout = ddp_run
    assert [ln for ln in stdout.splitlines() if "top1" in ln] == [ln for ln in stdout.splitlines() if ln]
    assert len(stdout.splitlines()) == 1  # rank 0 reports, rank 1 prints nothing
    for f in ("spec.json", "env.json", "log.txt", "metrics.jsonl", "last.pt", "final.json",
              "logits.npy", "done"):
        assert (run_dir / f).is_file(), f
    final = json.loads((run_dir / "final.json").read_text())
    hist = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert final["epochs"] == len(hist) == 3 and [h["global_epoch"] for h in hist] == [0, 1, 2]
    assert [h["lr"] for h in hist] == pytest.approx([0.025, 0.025, 0.0025])  # global batch 16
    assert [h["steps"] for h in hist] == [4, 4, 4]
    env = json.loads((run_dir / "env.json").read_text())
    assert (env["world_size"], env["backend"], env["sync_batchnorm"]) == (2, "gloo", False)
    log = (run_dir / "log.txt").read_text()
    assert log.count(" done: top1") == 1 and log.count("epoch 3/3") == 1  # rank 0 only
    assert "DDP 2 ranks (gloo, per-rank BatchNorm)" in log


def test_ddp_checkpoint_replicas_and_evaluation_match_one_process(ddp_run):
    """The checkpoint (rank 0's weights) hashes to the digest all ranks agreed on, and one process
    evaluating those weights gets the logits the sharded DDP evaluation wrote."""
    run_dir, _ = ddp_run
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2
    spec = RunSpec.from_dict(ckpt["spec"]["request"])
    assert ckpt["spec"]["identity"]["numerics"]["world_size"] == 2  # another run than 1 process
    cfg = resolve_config(spec)
    t = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    t.model.load_state_dict(ckpt["model"])
    assert f"state sha256 {state_digest(t.model)}" in (run_dir / "log.txt").read_text()
    logits = t.evaluate()
    t.close()
    assert np.array_equal(logits.astype(np.float32), np.load(run_dir / "logits.npy"))
    final = json.loads((run_dir / "final.json").read_text())
    labels = load_run_data(spec, make_config("smoke")).test_labels
    assert (logits.argmax(1) == labels).mean() == pytest.approx(final["top1"])


def test_ddp_run_killed_and_rerun_equals_uninterrupted(store, ddp_run, tmp_path):
    run_dir, _ = ddp_run
    out = tmp_path / "b"
    proc = torchrun(store, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / run_dir.name / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    proc.wait(timeout=60)
    assert ckpt.exists() and not (out / run_dir.name / "done").exists()
    finish(torchrun(store, out, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    b = out / run_dir.name
    assert "resuming run" in (b / "log.txt").read_text()
    fa, fb = (json.loads((d / "final.json").read_text()) for d in (run_dir, b))
    assert without_timing(fa) == without_timing(fb)
    assert np.array_equal(np.load(run_dir / "logits.npy"), np.load(b / "logits.npy"))


# ------------------------------------------------------------------ FR-Head and InfoGCN under DDP
def backbone_trainer(store: str, method: str, backbone: str, dist: DistInfo | None = None) -> Trainer:
    """A 2-step smoke run of ``method`` on ``backbone`` (base width 8, 16 frames)."""
    spec = normalise(RunSpec(dataset=store, method=method, imbalance=10, n_max=40, profile="smoke",
                             seed=3, backbone=backbone,
                             train={"epochs": 1, "max_steps_per_epoch": 2, "max_test_clips": 12,
                                    "window": 16, "base_channel": 8}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"), dist=dist)


def fr_head_memory_update(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FR-Head's next class memory from a loss on (x, y), the model in eval mode (BatchNorm on
    its running statistics: each clip's features do not depend on the other clips)."""
    t.model.eval()
    with torch.no_grad():
        batch = Batch(x=x, y=y, index=torch.arange(len(y)))
        t.method.loss(t.method.forward(t.model, batch, t.ctx), batch, t.ctx)
    t.model.train()
    return t.method._next_memory.clone()


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 25, 2, generator=g), torch.tensor([0, 1, 2, 3, 0, 1, 4, 5])


def _ddp_backbone_worker(rank: int, port: int, store: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with process_group(torch.device("cpu")) as dist:
        res = {}
        for method, backbone in (("fr_head", "ctrgcn"), ("ce", "infogcn")):
            t = backbone_trainer(store, method, backbone, dist)
            if method == "fr_head":  # this rank's half of one global batch
                x, y = global_batch()
                half = slice(4 * rank, 4 * rank + 4)
                res["memory_update"] = fr_head_memory_update(t, x[half], y[half])
            logits = t.fit()  # checks the replicas after each epoch (raises if they differ)
            res[method] = {"model": t.model.state_dict(), "logits": torch.from_numpy(logits),
                           "terms": t.history[-1]["loss_terms"]}
            if method == "fr_head":
                res[method]["memory"] = t.method.memory.clone()
            t.close()
        torch.save(res, f"{out}/rank{rank}.pt")


def test_ddp_fr_head_on_ctrgcn_and_infogcn_aux_losses(store, tmp_path):
    """2-rank gloo DDP: FR-Head (its class memory all-reduced through ``ctx.all_reduce_mean``)
    on CTR-GCN and CE on InfoGCN (the harness's aux losses, the latent's buffers) finish with
    bitwise-equal replicas, memories and gathered logits. FR-Head's memory update from two half
    batches equals one process's update from the global batch. (Whole runs are not compared with
    one process: on CPU BatchNorm uses per-rank batch statistics.)"""
    mp.spawn(_ddp_backbone_worker, args=(free_port(), str(store), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for method in ("fr_head", "ce"):
        a, b = r0[method], r1[method]
        assert a["model"].keys() == b["model"].keys()
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (method, k)
        assert torch.equal(a["logits"], b["logits"]) and torch.isfinite(a["logits"]).all()
        assert a["terms"] == b["terms"]  # the logged terms are the global batch's
    assert torch.equal(r0["fr_head"]["memory"], r1["fr_head"]["memory"])
    assert r0["ce"]["terms"]["infogcn_mmd"] > 0 and r0["ce"]["terms"]["infogcn_z_mean"] > 0
    # the memory update: both ranks agree, and equal one process on the whole batch
    ref = backbone_trainer(str(store), "fr_head", "ctrgcn")
    whole = fr_head_memory_update(ref, *global_batch())
    ref.close()
    assert torch.equal(r0["memory_update"], r1["memory_update"])
    assert torch.allclose(r0["memory_update"], whole, atol=1e-6, rtol=1e-5)
    # and the update is not the rank's own half alone
    ref = backbone_trainer(str(store), "fr_head", "ctrgcn")
    x, y = global_batch()
    own = fr_head_memory_update(ref, x[:4], y[:4])
    ref.close()
    assert not torch.allclose(own, whole, atol=1e-4)
