"""The counter-based generator: known answers, identical bits everywhere, and the distributions."""

import ast
import inspect
import math
import sys

import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, np_of, ulp_distance
from hypothesis import given
from hypothesis import strategies as st

from eggroll_np import _philox, _random_cupy, _random_jax, _random_numpy, random
from eggroll_np._array_api import array_namespace

KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

words32 = st.integers(0, 2**32 - 1)


def _philox_on(backend, counter, key, wide):
    xp = backend.xp
    words = [xp.asarray([c], dtype=_philox.word_dtype(xp), device=backend.device) for c in counter]
    return tuple(int(np_of(w)[0]) for w in random.philox4x32_10(xp, words, key, backend.device, wide=wide))


def _multiply_paths(backend):
    """The 32×32→64 multiply paths this backend can run: always the 16-bit split, uint64 where it exists."""
    return [False, True] if backend.name in ("numpy", "strict", "cupy") else [False]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_the_known_answer_vectors_on_python_integers(counter, key, expected):
    assert random.philox4x32_10_int(counter, key) == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_the_known_answer_vectors_on_every_backend_and_multiply_path(backend, counter, key, expected):
    for wide in _multiply_paths(backend):
        assert _philox_on(backend, counter, key, wide) == expected


@given(counter=st.tuples(words32, words32, words32, words32), key=st.tuples(words32, words32))
def test_split_and_wide_multiplies_give_the_python_integer_result(counter, key):
    expected = random.philox4x32_10_int(counter, key)
    for name, wide in [("numpy", True), ("numpy", False), ("strict_no_x64", False)]:
        assert _philox_on(get_backend(name), counter, key, wide) == expected


def _bits(backend, stream, directions, n_blocks):
    return np.stack([np_of(w) for w in random.random_bits(backend.xp, stream, directions, n_blocks, backend.device)])


def test_raw_bits_are_identical_on_every_backend(backend):
    stream = random.derive_key(12345, 7, random.stream_id("layer.0.weight"))
    reference = _bits(get_backend("numpy"), stream, range(3, 11), 37)
    np.testing.assert_array_equal(_bits(backend, stream, range(3, 11), 37), reference)


@pytest.mark.parametrize("kind", ["uniform", "normal", "rademacher"])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 4099, 20000])
def test_numpy_fast_path_matches_the_portable_path(kind, n):
    """The chunked NumPy path gives the portable bits: uniforms and signs exactly, normals to a few ulp."""
    numpy = get_backend("numpy")
    stream = random.derive_key(3, 1, random.stream_id("w"))
    for dtype in (np.float32, np.float64):
        for directions in (range(0, 1), range(5, 9), range(0, 3000)):
            if n * len(directions) > 10**6:
                continue
            fast = random.draw(numpy.xp, kind, stream, directions, n, dtype=dtype, dev="cpu")
            portable = random.draw_portable(numpy.xp, kind, stream, directions, n, dtype=dtype, dev="cpu")
            assert fast.shape == portable.shape == (len(directions), n)
            assert fast.dtype == portable.dtype == dtype
            if kind == "normal":
                assert ulp_distance(np_of(fast), np_of(portable), dtype).max() <= 4
            else:
                np.testing.assert_array_equal(fast, portable)


@pytest.mark.parametrize("name", [n for n in BACKEND_NAMES if n != "numpy"])
def test_normals_agree_across_backends_to_a_few_ulp(name):
    backend = get_backend(name)
    stream = random.derive_key(99, 0, random.stream_id("w"))
    for dtype_name in ("float32", "float64"):
        if dtype_name == "float64" and not backend.has_float64:
            continue
        z = random.normal(
            backend.xp, stream, range(2, 6), 10000, dtype=getattr(backend.xp, dtype_name), dev=backend.device
        )
        reference = random.normal(np, stream, range(2, 6), 10000, dtype=getattr(np, dtype_name), dev="cpu")
        assert ulp_distance(np_of(z), np_of(reference), getattr(np, dtype_name)).max() <= 4


@pytest.mark.parametrize("kind", ["uniform", "rademacher"])
def test_uniforms_and_signs_are_bit_identical_across_backends(backend, kind):
    stream = random.derive_key(5, 2, random.stream_id("b"))
    reference = random.draw(np, kind, stream, range(0, 3), 999, dtype=np.float32, dev="cpu")
    got = random.draw(backend.xp, kind, stream, range(0, 3), 999, dtype=backend.xp.float32, dev=backend.device)
    np.testing.assert_array_equal(np_of(got), reference)


def test_uniform_conversion_maps_the_extreme_words_inside_the_unit_interval():
    """top24(w)·2⁻²⁴ + 2⁻²⁵: word 0 gives 2⁻²⁵, never 0; float64 word pair (0, 0) gives 2⁻⁵⁴."""
    xp = get_backend("numpy").xp
    words = [np.asarray([0, 0xFFFFFFFF], dtype=np.uint32) for _ in range(4)]
    u32 = np.stack(_philox._uniform_lanes(xp, words, xp.float32))
    assert u32.dtype == np.float32
    assert (u32[:, 0] == 2.0**-25).all() and (u32 > 0).all() and (u32 <= 1).all()
    u64 = np.stack(_philox._uniform_lanes(xp, words, xp.float64))
    assert (u64[:, 0] == 2.0**-54).all() and (u64 > 0).all() and (u64 <= 1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_million_normals_have_mean_0_and_variance_1_within_5_standard_errors(dtype):
    n = 10**6
    z = np_of(random.normal(np, random.derive_key(2024, 0, 17), range(0, 1), n, dtype=dtype, dev="cpu"))
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / n)  # Var(s²) = 2σ⁴/n for normal samples
    assert abs(np.mean(z**4) - 3.0) < 5 * math.sqrt(96.0 / n)  # E z⁴ = 3, Var z⁴ = 105 − 9 = 96


def test_normal_tails_match_the_gaussian_within_5_standard_errors():
    n = 10**6
    z = np_of(random.normal(np, random.derive_key(7, 0, 1), range(0, 1), n, dtype=np.float32, dev="cpu"))
    for threshold, p in [(1.0, 0.31731050786291415), (2.0, 0.04550026389635842), (3.0, 0.0026997960632601866)]:
        frequency = np.mean(np.abs(z) > threshold)
        assert abs(frequency - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_uniforms_and_signs_have_the_right_moments():
    n = 10**6
    u = np_of(random.uniform(np, random.derive_key(1, 0, 2), range(0, 1), n, dtype=np.float64, dev="cpu"))
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert u.min() > 0 and u.max() < 1
    s = np_of(random.rademacher(np, random.derive_key(1, 0, 3), range(0, 1), n, dtype=np.float32, dev="cpu"))
    assert set(np.unique(s)) == {-1.0, 1.0}
    assert abs(s.mean()) < 5 / math.sqrt(n)


@given(
    start=st.integers(0, 50),
    count=st.integers(1, 6),
    n=st.integers(1, 300),
    extra=st.integers(0, 300),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 2**40),
)
def test_one_direction_and_any_prefix_can_be_rebuilt_alone(start, count, n, extra, seed, epoch):
    """Element e of direction k depends only on (key, k, e): not on which other directions or how many
    elements were drawn alongside it."""
    stream = random.derive_key(seed, epoch, random.stream_id("x"))
    batch = random.normal(np, stream, range(start, start + count), n + extra, dtype=np.float32, dev="cpu")
    for offset in range(count):
        alone = random.normal(np, stream, range(start + offset, start + offset + 1), n, dtype=np.float32, dev="cpu")
        np.testing.assert_array_equal(alone[0], batch[offset, :n])


def test_keys_differ_by_seed_epoch_and_stream_and_stream_ids_are_fnv1a():
    keys = {random.derive_key(s, e, i).key for s in (0, 1, 2**63) for e in (0, 1, 2**33) for i in (0, 1)}
    assert len(keys) == 18
    assert random.stream_id("") == 0x811C9DC5  # FNV-1a 32-bit test vectors
    assert random.stream_id("a") == 0xE40C292C
    assert random.stream_id("foobar") == 0xBF9CF968


def test_bad_generator_arguments_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="seed=-1"):
        random.derive_key(-1, 0, 0)
    with pytest.raises(ValueError, match="epoch"):
        random.derive_key(0, 2**64, 0)
    with pytest.raises(TypeError, match="range"):
        random.normal(np, random.derive_key(0, 0, 0), [0, 1], 4, dtype=np.float32, dev="cpu")
    with pytest.raises(TypeError, match="float32 or float64"):
        random.normal(np, random.derive_key(0, 0, 0), range(1), 4, dtype=np.int32, dev="cpu")
    for draw in (random.draw, random.draw_portable):
        with pytest.raises(ValueError, match="kind='cauchy' must be one of 'uniform', 'normal', 'rademacher'"):
            draw(np, "cauchy", random.derive_key(0, 0, 0), range(1), 4, dtype=np.float32, dev="cpu")


BAD_DRAWS = [  # (kind, directions, n, dtype name, error, message)
    ("cauchy", range(2), 4, "float32", ValueError, "kind='cauchy' must be one of"),
    (None, range(2), 4, "float32", TypeError, "kind=None must be one of"),
    ("normal", [0, 1], 4, "float32", TypeError, r"directions=\[0, 1\] must be a range with step 1 .*, not a list"),
    ("normal", range(0, 4, 2), 4, "float32", ValueError, r"directions=range\(0, 4, 2\) must be a range with step 1"),
    ("normal", range(-1, 2), 4, "float32", ValueError, r"directions=range\(-1, 2\) must be .* inside \[0, 2\*\*32\)"),
    ("normal", range(2**32 - 1, 2**32 + 1), 4, "float32", ValueError, r"directions=range\(4294967295, 4294967297\)"),
    ("uniform", range(2), 4, "int32", TypeError, "dtype=.*int32.* must be float32 or float64"),
    ("rademacher", range(2), -1, "float32", ValueError, "n=-1 must be an integer ≥ 0"),
    ("rademacher", range(2), 4.0, "float32", TypeError, "n=4.0 must be an integer ≥ 0, not a float"),
]


@pytest.mark.parametrize(("kind", "directions", "n", "dtype", "error", "message"), BAD_DRAWS)
def test_draw_and_draw_portable_refuse_bad_arguments_alike(backend, kind, directions, n, dtype, error, message):
    """One check for every path: the fast path of `draw` and the portable path raise the same error."""
    stream = random.derive_key(0, 0, 0)
    raised = []
    for draw in (random.draw, random.draw_portable):
        with pytest.raises(error, match=message) as caught:
            draw(backend.xp, kind, stream, directions, n, dtype=getattr(backend.xp, dtype), dev=backend.device)
        raised.append(str(caught.value))
    assert raised[0] == raised[1]


@pytest.mark.parametrize("kind", ["uniform", "normal", "rademacher"])
def test_zero_size_draws_are_empty_arrays_on_every_backend(backend, kind):
    """n = 0 or an empty range of directions (a leaf of size zero) gives an empty (D, n) array, no error."""
    stream = random.derive_key(4, 1, random.stream_id("empty"))
    for dtype in backend.float_dtypes:
        for directions, n in ((range(0, 3), 0), (range(3, 3), 5), (range(7, 7), 0)):
            for draw in (random.draw, random.draw_portable):
                z = draw(backend.xp, kind, stream, directions, n, dtype=dtype, dev=backend.device)
                assert z.shape == (len(directions), n) and z.dtype == dtype
                assert array_namespace(z) is backend.xp
    words = random.random_bits(backend.xp, stream, range(0, 3), 0, backend.device)
    assert [w.shape for w in words] == [(3, 0)] * 4


def _imports(module) -> set[tuple[int, str]]:
    """(level, module) of every import statement in a module's source (level 0: absolute)."""
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            found |= {(0, alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.level, node.module or ""))
    return found


def test_the_portable_generator_imports_only_the_array_api_door_and_the_standard_library():
    """No upward imports: `_philox` knows neither `random` nor the fast paths, which build on `_philox`."""
    for level, name in _imports(_philox):
        assert (level, name) == (1, "_array_api") or (level == 0 and name.split(".")[0] in sys.stdlib_module_names)
    for fast_path in (_random_numpy, _random_cupy, _random_jax):
        assert (1, "random") not in _imports(fast_path) and (1, "_philox") in _imports(fast_path)
    assert random.derive_key is _philox.derive_key and random.StreamKey is _philox.StreamKey


@pytest.mark.parametrize("kind", ["uniform", "normal", "rademacher"])
def test_jax_compiled_path_matches_the_portable_path(kind):
    """JAX draws through two jitted kernels; they must give the portable path's bits (normals: 4 ulp)."""
    jax_backend = get_backend("jax")
    xp, dev = jax_backend.xp, jax_backend.device
    stream = random.derive_key(8, 3, random.stream_id("w"))
    for directions, n in ((range(0, 1), 5), (range(7, 12), 333)):
        fast = random.draw(xp, kind, stream, directions, n, dtype=xp.float32, dev=dev)
        portable = random.draw_portable(xp, kind, stream, directions, n, dtype=xp.float32, dev=dev)
        assert fast.shape == (len(directions), n) and fast.dtype == xp.float32 and fast.devices() == {dev}
        if kind == "normal":
            assert ulp_distance(np_of(fast), np_of(portable), np.float32).max() <= 4
        else:
            np.testing.assert_array_equal(np_of(fast), np_of(portable))
