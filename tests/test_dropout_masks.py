"""Dropout's masks: one key, one mask on every backend, with honest statistics.

The mask is a counter-based hash (Threefry-2x32, 20 rounds) of the key and the element's index
in uint32 integer operations, so it is the same bit for bit on NumPy, jax (eager and jitted,
with a host or a jax key), array_api_strict and cupy. Statistical bounds are binomial: a rate
estimated from ``n`` independent draws lies within ``Z`` standard deviations of its mean
(``Z = 5``: a false alarm once in about 1.7 million runs).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import BACKENDS, backend_or_skip
from jax.extend.random import threefry_2x32

from funcnet import backend, layers, random

Z = 5.0
SHAPE = (64, 300)


def _host(x):
    return np.asarray(backend.to_numpy(x))


def _within(successes: int, n: int, p: float) -> bool:
    return abs(successes - n * p) <= Z * math.sqrt(n * p * (1.0 - p))


# --- the hash itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 5, 2**64 - 1])
def test_the_hash_is_threefry_2x32_word_for_word(seed):
    # against jax's own Threefry-2x32 (jax.extend.random): lane 0 of counter i is word 2i, lane 1 word 2i+1
    key = random.key(seed)
    n = 1001
    words = random._threefry_bits(np, int(key[0]), int(key[1]), n)
    pairs = (n + 1) // 2
    counts = jnp.concatenate([jnp.arange(pairs, dtype=jnp.uint32), jnp.zeros(pairs, jnp.uint32)])
    y = np.asarray(threefry_2x32(jnp.asarray(key), counts))
    np.testing.assert_array_equal(words, np.stack([y[:pairs], y[pairs:]], axis=1).reshape(-1)[:n])


def test_every_bit_of_the_words_is_balanced():
    words = random._threefry_bits(np, 12345, 67890, 200_000)
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    ones = bits.sum(axis=0)
    assert all(_within(int(k), words.size, 0.5) for k in ones), ones


# --- one key, one mask, every backend -------------------------------------------------------------


def _masks_on_every_backend(key, p, shape):
    """``{label: host bool mask}`` for every usable backend (cupy where there is one)."""
    masks = {"numpy": random.bernoulli(key, p, shape)}
    for name in BACKENDS[1:]:
        if backend.why_unavailable(name) is None:
            xp = backend.get(name)
            masks[name] = _host(random.bernoulli(key, p, shape, xp=xp))
            masks[f"{name} key"] = _host(random.bernoulli(backend.put(key, xp), p, shape))
    masks["jax jit, jax key"] = _host(jax.jit(lambda k: random.bernoulli(k, p, shape))(jnp.asarray(key)))
    masks["jax jit, host key"] = _host(jax.jit(lambda x: random.bernoulli(key, p, shape, xp=jnp) & (x > 0))(
        jnp.ones(shape)))
    return masks


@pytest.mark.parametrize("p", [0.5, 0.7, 0.1, 1 - 2**-20])
def test_the_same_mask_bit_for_bit_on_every_backend(p):
    masks = _masks_on_every_backend(random.key(2024), p, SHAPE)
    assert {"numpy", "array_api_strict", "jax", "jax jit, jax key", "jax jit, host key"} <= set(masks)
    reference = masks["numpy"]
    assert reference.dtype == np.bool_ and reference.shape == SHAPE
    for label, mask in masks.items():
        assert mask.dtype == np.bool_, label
        np.testing.assert_array_equal(mask, reference, err_msg=label)


def test_dropout_layers_mask_alike_on_every_backend_and_under_jit():
    layer = layers.Dropout(0.3)
    x = np.ones(SHAPE, np.float32)
    key = random.key(9)
    want = layer.apply((), x, rng=key)
    for name in BACKENDS[1:]:
        if backend.why_unavailable(name) is None:
            got = layer.apply((), backend.put(x, name), rng=key)
            np.testing.assert_array_equal(_host(got), want, err_msg=name)
    jitted = jax.jit(lambda x, k: layer.apply((), x, rng=k))(jnp.asarray(x), jnp.asarray(key))
    np.testing.assert_array_equal(_host(jitted), want)


def test_a_stacks_masks_alike_when_its_key_is_split_and_folded_under_jit():
    # the training step's path: fold_in(step) then split per layer, traced with a jax key
    net = layers.serial(layers.Dropout(0.5), layers.Dropout(0.2))
    x = np.ones((16, 40), np.float32)
    key = random.key(3)

    def step(x, key, s):
        return net.apply(((), ()), x, rng=random.fold_in(key, s))

    want = step(x, key, 5)
    got = jax.jit(step)(jnp.asarray(x), jnp.asarray(key), jnp.asarray(5, jnp.int32))
    np.testing.assert_array_equal(_host(got), want)

    def masks(key):  # the same keys drawn by hand, with a key on any backend
        keys = random.split(random.fold_in(key, 5), 2)
        return [_host(random.bernoulli(keys[i, ...], keep, (16, 40))) for i, keep in enumerate((0.5, 0.8))]

    xs = backend_or_skip("array_api_strict")
    for got_mask, want_mask in zip(masks(backend.put(key, xs)), masks(key), strict=True):
        np.testing.assert_array_equal(got_mask, want_mask)


def test_a_mask_does_not_depend_on_the_batch_size():
    key = random.key(77)
    small, large = random.bernoulli(key, 0.6, (32, 100)), random.bernoulli(key, 0.6, (64, 100))
    np.testing.assert_array_equal(small, large[:32])
    odd = random.bernoulli(key, 0.6, (3, 7))  # an odd count uses half of the last Threefry pair
    np.testing.assert_array_equal(odd.reshape(-1), large.reshape(-1)[:21])


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_the_edges_of_p(p):
    mask = random.bernoulli(random.key(1), p, (5, 5))
    assert mask.dtype == np.bool_ and bool(np.all(mask == bool(p)))
    jitted = jax.jit(lambda k: random.bernoulli(k, p, (5, 5)))(jnp.asarray(random.key(1)))
    np.testing.assert_array_equal(_host(jitted), mask)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"bernoulli probability must be in \[0, 1\], got -0.5"):
        random.bernoulli(random.key(0), -0.5, (2,))
    with pytest.raises(TypeError, match="bernoulli probability must be a real number"):
        random.bernoulli(random.key(0), "0.5", (2,))
    with pytest.raises(TypeError, match=r"a key is a uint32 array of shape \(2,\)"):
        random.bernoulli(jnp.zeros(3, jnp.uint32), 0.5, (2,))
    with pytest.raises(ValueError, match="at most 2\\*\\*33 elements"):
        random.bernoulli(random.key(0), 0.5, (2**17, 2**17))


# --- statistics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.5, 0.8, 0.05, 2**-10])
def test_the_keep_rate_is_binomial(p):
    n = 1_000_000
    for seed in range(3):
        kept = int(np.sum(random.bernoulli(random.key(seed), p, (n,))))
        assert _within(kept, n, p), (seed, kept / n, p)


def test_the_threshold_is_exact_in_integers():
    # p = 3/4: word u is kept exactly when u < 3 * 2**30, i.e. when its two top bits are not both set
    key = random.key(5)
    words = random._threefry_bits(np, 0, 5, 10_000)
    np.testing.assert_array_equal(random.bernoulli(key, 0.75, (10_000,)), (words >> 30) != 3)


def _agreement_within_bounds(a: np.ndarray, b: np.ndarray, p: float) -> bool:
    """Two independent Bernoulli(p) masks agree at each element with probability p² + (1-p)²."""
    agree = int(np.sum(a == b))
    return _within(agree, a.size, p * p + (1 - p) * (1 - p))


def test_masks_of_consecutive_steps_are_independent():
    key, p = random.key(11), 0.5
    masks = [random.bernoulli(random.fold_in(key, s), p, (200_000,)) for s in range(6)]
    for a, b in itertools.pairwise(masks):
        assert _agreement_within_bounds(a, b, p)
    # traced step counts give the same keys, hence the same masks
    traced = jax.jit(lambda k, s: random.bernoulli(random.fold_in(k, s), p, (200_000,)))
    np.testing.assert_array_equal(_host(traced(jnp.asarray(key), jnp.asarray(3, jnp.int32))), masks[3])


def test_masks_of_the_layers_of_one_step_are_independent():
    p = 0.7
    keys = random.split(random.fold_in(random.key(12), 4), 4)
    masks = [random.bernoulli(k, p, (200_000,)) for k in keys]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert _agreement_within_bounds(masks[i], masks[j], p), (i, j)


def test_neighbouring_elements_are_independent():
    p = 0.5
    mask = random.bernoulli(random.key(13), p, (400_000,))
    for lag in (1, 2, 3, 64):  # 1: the two lanes of one Threefry pair; 2: consecutive counters
        assert _agreement_within_bounds(mask[:-lag], mask[lag:], p), lag


# --- keys on every backend --------------------------------------------------------------------------


def test_device_keys_split_and_fold_like_host_keys():
    xs = backend_or_skip("array_api_strict")
    rng = np.random.default_rng(0)
    for _ in range(50):
        host = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
        data = int(rng.integers(-(2**31), 2**31))
        for xp in (xs, jnp):
            key = backend.put(host, xp)
            np.testing.assert_array_equal(_host(random.split(key, 3)), random.split(host, 3))
            np.testing.assert_array_equal(_host(random.fold_in(key, data)), random.fold_in(host, data))
            np.testing.assert_array_equal(_host(random.fold_in(key, xp.asarray(data, dtype=xp.int32))),
                                          random.fold_in(host, data))


@pytest.mark.parametrize("data", [0, 1, 2**31, 2**32 - 1, 2**40 + 3, 2**64 - 1, -1])
def test_fold_in_data_of_every_width(data):
    host = random.key(99)
    want = random.fold_in(host, data)
    np.testing.assert_array_equal(_host(random.fold_in(jnp.asarray(host), data)), want)
    xs = backend_or_skip("array_api_strict")
    if -(2**63) <= data < 2**63:
        np.testing.assert_array_equal(_host(random.fold_in(backend.put(host, xs), xs.asarray(data, dtype=xs.int64))),
                                      want)
    if 0 <= data < 2**32:
        np.testing.assert_array_equal(_host(random.fold_in(host, np.asarray(data, np.uint32))), want)
