import pytest

from benchmark.data.protocols import NTU120_XSUB_TRAIN, protocol_split
from benchmark.errors import BenchmarkError
from conftest import shared_path


def _names(*specs):
    return sorted(f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}" for s, c, p, a in specs)


def test_grouped_by_id_in_id_order_then_store_order():
    names = _names((1, 1, 2, 1), (1, 2, 1, 1), (2, 1, 1, 2), (1, 3, 3, 5), (3, 2, 38, 1))
    train, test = protocol_split("ntu60", "xsub", names)
    # performer 1 rows (store order), then 2, then 38; performer 3 is test
    assert train == ["S001C002P001R001A001", "S002C001P001R001A002", "S001C001P002R001A001",
                     "S003C002P038R001A001"]
    assert test == ["S001C003P003R001A005"]
    train, test = protocol_split("ntu60", "xview", names)
    assert sorted(train + test) == names and all(n[4:8] == "C001" for n in test)
    assert [n[4:8] for n in train] == sorted(n[4:8] for n in train)  # camera 2 block before camera 3


def test_ntu120_sets():
    assert len(NTU120_XSUB_TRAIN) == 53
    names = _names((18, 1, 45, 61), (17, 1, 45, 1), (18, 1, 44, 61))
    train, test = protocol_split("ntu120", "xset", names)
    assert train == ["S018C001P044R001A061", "S018C001P045R001A061"] and test == ["S017C001P045R001A001"]
    train, test = protocol_split("ntu120", "xsub", names)
    assert [n[8:12] for n in train] == ["P045", "P045"] and test == ["S018C001P044R001A061"]


def test_unknown_protocol():
    with pytest.raises(BenchmarkError, match="unknown protocol"):
        protocol_split("ntu60", "xset", [])


@pytest.mark.parametrize("bench,n_train,n_test", [("xsub", 40091, 16487), ("xview", 37646, 18932)])
def test_reproduces_official_ntu60_train_lists(bench, n_train, n_test):
    """Rows in exactly the order of CTR-GCN's x_train (= BRL's standard train lists)."""
    stats = shared_path("ntu-lt-splits", "standard_data", "ntu")
    names = (stats / "statistics" / "skes_available_name.txt").read_text().split()
    train, test = protocol_split("ntu60", bench, sorted(names))
    assert (len(train), len(test)) == (n_train, n_test)
    assert train == (stats / f"NTU60_{bench}_train.txt").read_text().split()
