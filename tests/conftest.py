"""Backends every test runs on (tests/helpers.py builds them):

- numpy: NumPy through array-api-compat.
- strict: array-api-strict with its strictest flags (API 2023.12, no boolean indexing, no data-dependent
  shapes, no extensions) on its default device.
- strict_no_x64: the same on the `no_x64` device: no uint64 or float64, so the 16-bit-split Philox path.
- jax: JAX on the CPU, without x64 (its default).
- torch: PyTorch on the CPU, where it is importable (`.ci/run` installs torch 2.13.0).
- cupy: under the `gpu` marker; every test with that marker skips itself where CuPy or a CUDA device is
  missing (`pytest -m gpu` runs them alone).
"""

import array_api_strict
import hypothesis
import pytest
from helpers import ALL_BACKENDS, cuda_unavailable, get_backend

array_api_strict.set_array_api_strict_flags(
    api_version="2023.12", boolean_indexing=False, data_dependent_shapes=False, enabled_extensions=()
)

hypothesis.settings.register_profile("repo", deadline=None, max_examples=25, derandomize=True, print_blob=True)
hypothesis.settings.load_profile("repo")


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return get_backend(request.param)


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None:
        reason = cuda_unavailable()
        if reason:
            pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n auto`, the README's command), the tests that start a local Ray instance run on
    one worker, one after another (`--dist loadgroup`): each starts Ray with 2 CPUs, and two at once would
    compete for the same cores and ports."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
