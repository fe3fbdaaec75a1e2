"""Samplers: exact counts, distributions, (seed, epoch) determinism and rank sharding."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.samplers import SAMPLERS, build_sampler, derive_seed
from benchmark.errors import BenchmarkError

# NTU60 IF100 shape (BRL's lists): n_c = int(600 * 0.01 ** (c / 59)), class 0 = head
COUNTS = np.array([int(600 * 0.01 ** (c / 59)) for c in range(60)])
LABELS = np.repeat(np.arange(60), COUNTS)
# the real LT sets are in x_train order, not grouped: shuffle so the samplers cannot rely on it
LABELS = LABELS[np.random.default_rng(0).permutation(len(LABELS))]


def test_lt_label_vector_is_the_spec_one():
    assert len(LABELS) == 7892 and COUNTS[0] == 600 and COUNTS[-1] == 6


def test_registry_names_and_errors():
    assert {"instance", "class_balanced", "ros"} <= set(SAMPLERS.names())
    with pytest.raises(BenchmarkError, match="did you mean"):
        SAMPLERS.get("class_balance")


@pytest.mark.parametrize("name", ["instance", "class_balanced", "ros"])
def test_epoch_order_is_pure_function_of_seed_and_epoch(name):
    a = build_sampler(name, LABELS, seed=3)
    b = build_sampler(name, LABELS, seed=3)
    b.set_epoch(5)
    _ = list(b)          # history must not matter
    b.set_epoch(2)
    a.set_epoch(2)
    assert np.array_equal(a.indices(), b.indices())
    assert np.array_equal(np.fromiter(a, dtype=np.int64), a.indices())
    assert not np.array_equal(a.indices(2), a.indices(3))
    assert not np.array_equal(a.indices(2), build_sampler(name, LABELS, seed=4).indices(2))


def test_instance_is_a_permutation():
    s = build_sampler("instance", LABELS, seed=0)
    for e in range(3):
        assert np.array_equal(np.sort(s.indices(e)), np.arange(len(LABELS)))
    assert len(s) == len(LABELS)


def test_class_balanced_cyclic_gives_equal_class_counts():
    s = build_sampler("class_balanced", LABELS, seed=1)
    idx = s.indices(0)
    assert len(idx) == len(s) == len(LABELS)
    per_class = np.bincount(LABELS[idx], minlength=60)
    assert per_class.max() - per_class.min() <= 1  # floor/ceil(7892 / 60) = 131/132
    s4 = build_sampler("class_balanced", LABELS, seed=1, epoch_factor=4)  # Feeder_LT_ros length
    assert len(s4.indices(0)) == 4 * len(LABELS)


def test_class_balanced_iid_is_uniform_over_classes_and_within_class():
    s = build_sampler("class_balanced", LABELS, seed=2, class_draw="iid")
    idx = np.concatenate([s.indices(e) for e in range(10)])     # 78,920 draws
    obs = np.bincount(LABELS[idx], minlength=60)
    exp = len(idx) / 60
    chi2 = ((obs - exp) ** 2 / exp).sum()
    # df = 59: mean 59, sd ~11; a long-tailed (instance) draw would give chi2 in the 10^5s
    assert chi2 < 59 + 6 * np.sqrt(2 * 59), chi2
    # within the head class every sample is hit ~ equally often (600 members, ~2.2 hits each)
    head = idx[LABELS[idx] == 0]
    hits = np.bincount(head, minlength=len(LABELS))[LABELS == 0]
    chi2_in = ((hits - hits.mean()) ** 2 / hits.mean()).sum()
    assert chi2_in < 599 + 6 * np.sqrt(2 * 599), chi2_in


def test_class_balanced_tail_is_drawn_as_often_as_head():
    s = build_sampler("class_balanced", LABELS, seed=0)
    lab = LABELS[s.indices(0)]
    assert abs((lab == 59).sum() - (lab == 0).sum()) <= 1


def test_ros_exact_counts_and_keeps_every_original():
    s = build_sampler("ros", LABELS, seed=0)
    for e in range(2):
        idx = s.indices(e)
        assert len(idx) == len(s) == 60 * 600
        assert (np.bincount(LABELS[idx], minlength=60) == 600).all()
        assert (np.bincount(idx, minlength=len(LABELS)) >= 1).all()
    # official: the extra copies are drawn once, only the order changes per epoch
    assert np.array_equal(np.sort(s.indices(0)), np.sort(s.indices(1)))
    r = build_sampler("ros", LABELS, seed=0, redraw_each_epoch=True)
    assert not np.array_equal(np.sort(r.indices(0)), np.sort(r.indices(1)))
    assert (np.bincount(LABELS[r.indices(1)], minlength=60) == 600).all()


@pytest.mark.parametrize("name", ["instance", "class_balanced", "ros"])
@pytest.mark.parametrize("world", [2, 3, 7])
def test_rank_shards_partition_the_global_order(name, world):
    ref = build_sampler(name, LABELS, seed=9)
    order = ref.global_order(4)
    shards = []
    for r in range(world):
        s = build_sampler(name, LABELS, seed=9, rank=r, world_size=world)
        s.set_epoch(4)
        shards.append(s.indices())
        assert len(shards[-1]) == len(s) == -(-len(order) // world)
    total = len(shards[0]) * world
    interleaved = np.stack(shards, axis=1).reshape(-1)          # rank r holds positions r::world
    assert np.array_equal(interleaved, np.resize(order, total))  # wrap-around padding
    assert np.array_equal(interleaved[:len(order)], order)


def test_tiny_subset_pads_by_repeating():
    s = [build_sampler("instance", [0, 1], seed=0, rank=r, world_size=5) for r in range(5)]
    got = np.concatenate([x.indices(0) for x in s])
    assert len(got) == 5 and set(got.tolist()) == {0, 1}


def test_argument_checks():
    with pytest.raises(ValueError):
        build_sampler("instance", LABELS, rank=2, world_size=2)
    with pytest.raises(ValueError):
        build_sampler("instance", [])
    with pytest.raises(ValueError):
        build_sampler("class_balanced", LABELS, class_draw="round_robin")


def test_derive_seed_separates_seed_and_epoch():
    assert derive_seed(0, 3, 1) != derive_seed(1, 3, 0)
    assert derive_seed(5, 3, 2) == derive_seed(5, 3, 2)
    assert 0 <= derive_seed(2**40, 1, 10**6) < 2**63
