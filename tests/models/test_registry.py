"""The model registry: one builder per name."""

import pytest

import tcm
from tcm.models import register_model, registry
from tcm.models.zoo import tsm_resnet18


def test_a_second_builder_under_a_registered_name_is_refused():
    def tsm_resnet18(num_classes: int, num_segments: int = 8, **kwargs):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"'tsm_resnet18' is registered already"):
        register_model(tsm_resnet18)
    assert "tsm_resnet18" in tcm.list_models()
    model = tcm.create_model("tsm_resnet18", num_classes=3, num_segments=2)
    assert model.num_segments == 2


def test_registering_the_same_builder_again_is_refused_too():
    with pytest.raises(ValueError, match="registered already"):
        register_model(tsm_resnet18)


def test_a_new_name_is_registered_and_built():
    def registry_test_model(num_classes: int, num_segments: int = 8, **kwargs):
        return tsm_resnet18(num_classes=num_classes, num_segments=num_segments, **kwargs)

    try:
        assert register_model(registry_test_model) is registry_test_model
        assert "registry_test_model" in tcm.list_models()
        model = tcm.create_model("registry_test_model", num_classes=4, num_segments=2)
        assert model.num_classes == 4
    finally:
        registry._MODELS.pop("registry_test_model", None)
