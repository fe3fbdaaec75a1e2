"""benchmark.metrics against hand-computed values (7 clips, 3 classes)."""
import math

import numpy as np
import pytest

from benchmark import metrics
from benchmark.data import splits

# label, logits, argmax (ties -> lower index), in top-2?
#   0  [3, 1, 0]  0 yes   |  1  [1, 2, 0]  1 yes   |  2  [0, 0, 5]  2 yes
#   0  [0, 2, 1]  1 no    |  1  [1, 1, 0]  0 yes   |  2  [2, 0, 1]  0 yes
#                          |                        |  2  [0, 0, 1]  2 yes
Z = np.array([[3, 1, 0], [0, 2, 1], [1, 2, 0], [1, 1, 0], [0, 0, 5], [2, 0, 1], [0, 0, 1]], float)
Y = np.array([0, 0, 1, 1, 2, 2, 2])
CM = [[1, 1, 0],   # class 0: one right, one called 1
      [1, 1, 0],   # class 1: the tie [1, 1, 0] goes to class 0
      [1, 0, 2]]   # class 2: two right, one called 0


def test_topk_and_tie_rule():
    assert metrics.topk_accuracy(Z, Y, 1) == pytest.approx(4 / 7)
    assert metrics.topk_accuracy(Z, Y, 2) == pytest.approx(6 / 7)
    assert metrics.topk_accuracy(Z, Y, 5) == 1.0  # k > C: every label is in the top C
    assert metrics.topk_predictions(Z, 1)[3, 0] == 0


def test_confusion_and_per_class():
    cm = metrics.confusion_matrix(metrics.topk_predictions(Z, 1)[:, 0], Y, 3)
    assert cm.tolist() == CM and cm.dtype == np.int64
    np.testing.assert_allclose(metrics.per_class_accuracy(cm), [0.5, 0.5, 2 / 3])


def test_groups_by_training_counts_and_boundaries():
    assert metrics.shot_groups([101, 100, 20, 19, 0]) == {"many": [0], "medium": [1, 2], "few": [3, 4]}
    counts = [600, 150, 100, 50, 20, 19, 6]
    assert metrics.shot_groups(counts) == splits.groups(counts)  # one rule in the whole suite


def test_summary_values():
    s = metrics.summarize(Z, Y, [150, 50, 5])
    assert s["top1"] == pytest.approx(4 / 7) and s["top5"] == 1.0
    assert (s["many"], s["medium"]) == (0.5, 0.5) and s["few"] == pytest.approx(2 / 3)
    assert s["confusion_matrix"] == CM and s["test_counts"] == [2, 2, 3]
    assert s["groups"] == {"many": [0], "medium": [1], "few": [2]}


def test_empty_group_is_none_not_zero():
    s = metrics.summarize(Z, Y, [150, 120, 50])  # IF-10-like: no class under 20 clips
    assert s["few"] is None
    assert s["many"] == 0.5 and s["medium"] == pytest.approx(2 / 3)


def test_class_without_test_clips_is_skipped_not_zero():
    z, y = Z[:4], Y[:4]  # no clip of class 2 left
    s = metrics.summarize(z, y, [150, 50, 5])
    assert s["per_class_accuracy"] == [0.5, 0.5, None]
    assert s["few"] is None and s["top1"] == 0.5


def test_best_epoch_takes_the_first_maximum():
    h = [{"top1": 0.2, "e": 0}, {"top1": 0.5, "e": 1}, {"top1": 0.5, "e": 2}, {"top1": 0.4, "e": 3}]
    assert metrics.best_epoch(h)["e"] == 1
    assert metrics.best_epoch([]) is None


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        metrics.topk_accuracy(Z, Y[:3])
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 3], [0, 1], 3)
    assert math.isnan(metrics.topk_accuracy(np.zeros((0, 3)), np.zeros(0, int)))
