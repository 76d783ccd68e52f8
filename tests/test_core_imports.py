"""mtl_core imports neither torch nor jax (checked in a fresh interpreter, as jaxtyping does)."""

CORE_MODULES = (
    "mtl_core",
    "mtl_core.data",
    "mtl_core.fitting",
    "mtl_core.curricula",
    "mtl_core.weighting",
    "mtl_core.metrics",
    "mtl_core.layout",
    "mtl_core.sparse",
    "mtl_core.labels",
    "mtl_core.checkpoint",
    "mtl_core.config",
    "mtl_core.batches",
    "mtl_core.array_ops",
    "mtl_core.aggregation",
    "mtl_core.active_set",
    "mtl_core.plans",
)


def test_mtl_core_loads_no_deep_learning_framework(helpers):
    assert helpers.frameworks_loaded_by(*CORE_MODULES) == []


def test_the_framework_check_reports_torch_for_torch_ref(helpers):
    # The same check on a backend must see its framework, else the test above proves nothing.
    assert "torch" in helpers.frameworks_loaded_by("torch_ref")
