"""PyTorch specifics (the backend itself runs in every backend-parametrized test): its uint32 lacks +, >>
and <<, so words are int64 there and must give NumPy's bits; tensors that require grad build no graph;
the CLI trains on it."""

import numpy as np
import pytest
from helpers import np_of

import eggroll_np as egg
from eggroll_np import _philox, random
from eggroll_np.cli import main

torch = pytest.importorskip("torch")
xp = pytest.importorskip("array_api_compat.torch")


def test_words_are_int64_and_give_the_bits_of_numpy():
    assert _philox.word_dtype(xp) == torch.int64 and _philox.word_dtype(np) == np.uint32
    stream = random.derive_key(2**63 + 5, 2**40 + 3, random.stream_id("w"))
    directions = range(2**32 - 3, 2**32 - 1)  # counters near the top of 32 bits
    words = random.random_bits(xp, stream, directions, 9, "cpu")
    expected = random.random_bits(np, stream, directions, 9, None)
    for got, want in zip(words, expected, strict=True):
        assert got.dtype == torch.int64 and int(got.min()) >= 0 and int(got.max()) < 2**32
        np.testing.assert_array_equal(np_of(got), want)


def test_tensors_that_require_grad_are_detached_from_the_graph():
    es = egg.EGGROLL(population_size=8, sigma=0.05, optimizer=egg.optim.adam(0.1))
    weight = torch.zeros((3, 4), requires_grad=True)
    state = es.init({"w": weight})
    assert not state.params["w"].requires_grad and weight.requires_grad  # the user's tensor is untouched
    pop = es.ask(state)
    outputs = pop.linear("w", torch.ones((2, 4)))
    fitness = torch.sum(outputs, dim=(1, 2)) * torch.ones((), requires_grad=True)
    assert fitness.requires_grad
    new, info = es.tell(state, pop, fitness)
    assert not new.params["w"].requires_grad and not info["grad_norm"].requires_grad
    host = egg.EGGROLL(population_size=8, sigma=0.05, optimizer=egg.optim.adam(0.1))
    host_state = host.init({"w": np.zeros((3, 4), np.float32)})
    host_pop = host.ask(host_state)
    expected, _ = host.tell(
        host_state, host_pop, np.sum(host_pop.linear("w", np.ones((2, 4), np.float32)), axis=(1, 2))
    )
    np.testing.assert_allclose(np_of(new.params["w"]), np_of(expected.params["w"]), atol=1e-6)


def test_the_cli_trains_on_torch_as_on_numpy(tmp_path, capsys):
    runs = {}
    for backend in ("numpy", "torch"):
        argv = ["train", "rosenbrock", "--dim", "8", "--generations", "5", "--population", "16"]
        assert main([*argv, "--backend", backend, "--out", str(tmp_path / backend), "--quiet"]) == 0
        runs[backend] = capsys.readouterr().out
    assert "rosenbrock" in runs["torch"]
    value = {name: float(out.split()[2]) for name, out in runs.items()}
    assert value["torch"] == pytest.approx(value["numpy"], rel=1e-5)
