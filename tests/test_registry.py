import pytest

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry


def test_register_get_build_names():
    reg = Registry("thing")

    @reg.register("alpha_one")
    class A:
        def __init__(self, x=1):
            self.x = x

    @reg.register()
    def beta():
        return 2

    assert reg.get("alpha_one") is A and A.registry_name == "alpha_one"
    assert reg.build("alpha_one", x=5).x == 5
    assert reg.names() == ["alpha_one", "beta"]
    assert reg.names("al*") == ["alpha_one"]
    assert "beta" in reg and len(reg) == 2


def test_duplicate_and_did_you_mean():
    reg = Registry("method")
    reg.register("balanced_softmax")(object)
    with pytest.raises(ValueError, match="twice"):
        reg.register("balanced_softmax")(int)
    with pytest.raises(BenchmarkError, match="did you mean balanced_softmax"):
        reg.get("balanced_sofmax")
