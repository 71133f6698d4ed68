"""funcnet.random (pure, splittable keys) and funcnet.initializers (host draws from a key)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import readonly

from funcnet import backend, initializers, random

SEED = 42


def _equal(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, SEED, 2**32 + 7, 2**64 - 1])
def test_key_is_uint32_pair_in_jax_layout(seed):
    key = random.key(seed)
    assert isinstance(key, np.ndarray)
    assert key.dtype == np.uint32 and key.shape == (2,)
    if seed < 2**63:  # jax takes a signed 64-bit seed
        np.testing.assert_array_equal(key, np.asarray(jax.random.PRNGKey(seed)))


@pytest.mark.parametrize(("seed", "error", "match"), [
    (1.5, TypeError, "seed must be an int, got float"),
    (True, TypeError, "seed must be an int, got bool"),
    (-1, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
    (2**64, ValueError, "seed must be in"),
])
def test_bad_seed(seed, error, match):
    with pytest.raises(error, match=match):
        random.key(seed)


def test_a_key_that_is_not_a_uint32_pair_is_refused():
    with pytest.raises(TypeError, match=r"a key is a uint32 array of shape \(2,\), got int64 \(3,\)"):
        random.split(np.arange(3))


def test_split_is_pure_and_gives_distinct_keys():
    key = readonly(random.key(SEED))  # keys are never written to
    keys = random.split(key, 4)
    assert keys.shape == (4, 2) and keys.dtype == np.uint32
    assert _equal(keys, random.split(key, 4))  # same key, same keys, however often used
    rows = {tuple(k) for k in keys.tolist()} | {tuple(key.tolist())}
    assert len(rows) == 5
    assert _equal(random.split(key, 2), keys[:2])  # a prefix: n does not change the first keys


def test_fold_in_is_pure_and_distinct():
    key = readonly(random.key(SEED))
    folded = [random.fold_in(key, i) for i in range(5)]
    assert all(k.dtype == np.uint32 and k.shape == (2,) for k in folded)
    assert all(_equal(k, random.fold_in(key, i)) for i, k in enumerate(folded))
    assert len({tuple(k.tolist()) for k in folded}) == 5
    split_rows = {tuple(k) for k in random.split(key, 5).tolist()}
    assert not split_rows & {tuple(k.tolist()) for k in folded}


def test_same_key_same_numbers_and_different_seeds_differ():
    a, b = random.key(1), random.key(2)
    assert _equal(random.normal(a, (100,)), random.normal(a, (100,)))
    assert not _equal(random.normal(a, (100,)), random.normal(b, (100,)))
    assert _equal(random.uniform(a, (50,)), random.uniform(a, (50,)))
    assert _equal(random.bernoulli(a, 0.3, (50,)), random.bernoulli(a, 0.3, (50,)))
    assert _equal(random.permutation(a, 20), random.permutation(a, 20))
    assert not _equal(random.permutation(a, 20), random.permutation(b, 20))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_draws_have_the_asked_dtype_and_sane_moments(dtype):
    key = random.key(SEED)
    z = random.normal(key, (20000,), dtype)
    u = random.uniform(key, (20000,), dtype, minval=-2.0, maxval=3.0)
    assert z.dtype == np.dtype(dtype) and u.dtype == np.dtype(dtype)
    z64, u64 = z.astype(np.float64), u.astype(np.float64)
    assert abs(z64.mean()) < 0.05 and abs(z64.std() - 1.0) < 0.05
    assert u64.min() >= -2.0 and u64.max() <= 3.0 and abs(u64.mean() - 0.5) < 0.05


def test_float16_normal_is_the_float32_draw_cast():
    key = random.key(SEED)
    np.testing.assert_array_equal(random.normal(key, (50,), "float16"),
                                  random.normal(key, (50,), "float32").astype(np.float16))


def test_bernoulli_and_permutation():
    key = random.key(SEED)
    draws = random.bernoulli(key, 0.25, (40000,))
    assert draws.dtype == np.bool_ and abs(draws.mean() - 0.25) < 0.01
    assert np.sort(random.permutation(key, 30)).tolist() == list(range(30))
    with pytest.raises(ValueError, match=r"bernoulli probability must be in \[0, 1\], got 1.5"):
        random.bernoulli(key, 1.5, (2,))


def test_host_draws_move_to_a_backend_with_the_same_numbers(xp):
    key = random.key(SEED)
    moved = random.normal(key, (3, 4), "float32", xp=xp)
    assert backend.namespace(moved) is xp and moved.dtype == xp.float32
    np.testing.assert_array_equal(backend.to_numpy(moved), random.normal(key, (3, 4)))


def test_nothing_touches_numpy_global_random_state():
    before = np.random.get_state()
    key = random.key(SEED)
    random.normal(key, (10,))
    random.uniform(random.fold_in(key, 3), (10,))
    random.bernoulli(random.split(key)[0], 0.5, (10,))
    random.permutation(key, 10)
    initializers.get("glorot")(key, (4, 4), "float32")
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# --- jax keys: the same keys and masks as the host; the other draws through jax.random ------


def test_jax_keys_split_fold_and_mask_like_the_host():
    host = random.key(SEED)
    key = jnp.asarray(host)
    for got, want in ((random.split(key, 3), random.split(host, 3)),
                      (random.fold_in(key, 7), random.fold_in(host, 7)),
                      (random.bernoulli(key, 0.5, (5,)), random.bernoulli(host, 0.5, (5,)))):
        assert isinstance(got, jax.Array) and _equal(got, want)
    assert _equal(random.normal(key, (5,)), jax.random.normal(key, (5,), jnp.float32))
    assert _equal(random.uniform(key, (5,)), jax.random.uniform(key, (5,), jnp.float32))
    assert random.normal(key, (5,)).dtype == jnp.float32


def test_jax_keys_work_under_jit():
    @jax.jit
    def draw(key, step):
        k = random.fold_in(key, step)
        k1, k2 = random.split(k)
        return k1, random.normal(k1, (4,)), random.uniform(k2, (4,)), random.permutation(k2, 4)

    key = jnp.asarray(random.key(SEED))
    k1, z, u, p = draw(key, jnp.asarray(3, jnp.int32))
    h1, h2 = random.split(random.fold_in(random.key(SEED), 3))
    assert _equal(k1, h1)  # traced keys are the host's keys
    assert _equal(z, jax.random.normal(jnp.asarray(h1), (4,), jnp.float32))
    assert _equal(u, jax.random.uniform(jnp.asarray(h2), (4,), jnp.float32))
    assert sorted(np.asarray(p).tolist()) == [0, 1, 2, 3]
    assert _equal(draw(key, 3)[1], z)


# --- initializers ---------------------------------------------------------------------------

INITIALIZERS = {
    "glorot": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "lecun": lambda fan_in, fan_out: math.sqrt(1.0 / fan_in),
    "book": lambda fan_in, fan_out: 0.01,
}


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_stddev_on_a_big_matrix(name):
    shape = (400, 100)
    w = initializers.get(name)(random.key(SEED), shape, "float64")
    chex.assert_shape(w, shape)
    want = INITIALIZERS[name](*shape)
    assert abs(w.std() / want - 1.0) < 0.02
    assert abs(w.mean()) < 0.05 * want


@pytest.mark.parametrize("name", [*sorted(INITIALIZERS), "zeros"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_initializer_is_deterministic_and_keeps_dtype(name, dtype):
    init = initializers.get(name)
    a = init(random.key(SEED), (5, 3), dtype)
    b = init(random.key(SEED), (5, 3), dtype)
    assert isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, b)
    chex.assert_tree_all_finite(a)
    if name != "zeros":
        assert not np.array_equal(a, init(random.key(SEED + 1), (5, 3), dtype))


def test_book_initializer_is_one_hundredth_of_randn():
    key = random.key(SEED)
    for dtype in ("float32", "float64"):
        np.testing.assert_array_equal(initializers.book(key, (4, 3), dtype),
                                      random.normal(key, (4, 3), dtype) * np.asarray(0.01, dtype))
    half = initializers.book(key, (4, 3), "float16")
    np.testing.assert_array_equal(half, (random.normal(key, (4, 3), "float32") * np.float32(0.01))
                                  .astype(np.float16))


def test_float16_weights_are_the_float32_weights_cast():
    key = random.key(SEED)
    w16 = initializers.get("glorot")(key, (8, 8), "float16")
    w32 = initializers.get("glorot")(key, (8, 8), "float32")
    np.testing.assert_array_equal(w16, w32.astype(np.float16))


def test_unknown_initializer_name():
    with pytest.raises(ValueError, match=r"unknown initialiser 'uniformish'; expected one of \["):
        initializers.get("uniformish")


def test_zeros_and_a_callable_pass_through():
    custom = initializers.normal(2.0)
    assert initializers.get(custom) is custom
    np.testing.assert_array_equal(initializers.get("zeros")(None, (3,), "float32"), np.zeros(3, np.float32))


def test_add_const_numpy_fast_path_matches_the_portable_one():
    # Dropout's host path adds key words >= 2**31 in one NumPy pass; the portable path
    # (two or three adds below 2**31, for jax) must give the same uint32 words
    import array_api_strict as xps

    from funcnet import random as fr

    x = np.arange(0, 2**32 - 1, 2**27, dtype=np.uint32)
    for c in (0, 5, 2**31 - 1, 2**31, 2**32 - 1, 2**40 + 7):
        fast = fr._add_const(x, c)
        portable = np.asarray(fr._add_const(xps.asarray(x), c))
        assert fast.dtype == np.uint32 and (fast == portable).all()
        assert (fast == ((x.astype(np.uint64) + (c & 0xFFFFFFFF)) & 0xFFFFFFFF)).all()
