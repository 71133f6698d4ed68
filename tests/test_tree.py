"""funcnet.tree: the pytree operations on optree."""

from __future__ import annotations

import chex
import numpy as np
import pytest
from conftest import readonly

from funcnet import backend, tree


def _params():
    return ({"W": np.arange(6.0, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)},
            (),
            {"W": np.full((3, 1), 2.0, np.float32)})


def test_leaves_are_in_sorted_key_order():
    assert tree.leaves({"b": 2, "W": 1, "a": 3}) == [1, 3, 2]


def test_empty_nodes_have_no_leaves():
    assert tree.leaves(()) == []
    assert tree.leaves(None) == []
    assert tree.leaves(((), None, {"x": 1})) == [1]


def test_paths_read_like_positions_and_names():
    assert tree.paths(_params()) == ["0/W", "0/b", "2/W"]
    assert tree.path_str(()) == "<root>"
    assert [p for p, _ in tree.leaves_with_paths(_params())] == ["0/W", "0/b", "2/W"]
    assert tree.leaves_with_paths(np.ones(1))[0][0] == "<root>"


def test_flatten_unflatten_round_trip():
    params = _params()
    leaves, spec = tree.flatten(params)
    again = tree.unflatten(spec, leaves)
    assert tree.structure(again) == tree.structure(params)
    chex.assert_trees_all_equal(again, params)


def test_map_over_several_trees():
    a, b = _params(), _params()
    out = tree.map(lambda x, y: x * 2 + y, a, b)
    chex.assert_trees_all_close(out, tree.scale(a, 3.0))


def test_arithmetic_keeps_float32_and_does_not_write(xp):
    a = backend.put(readonly(_params()), xp)
    b = backend.put(readonly(_params()), xp)
    for out in (tree.add(a, b), tree.sub(a, b), tree.scale(a, 0.5), tree.zeros_like(a)):
        assert tree.structure(out) == tree.structure(a)
        assert all(leaf.dtype == xp.float32 for leaf in tree.leaves(out))
        assert all(backend.namespace(leaf) is xp for leaf in tree.leaves(out))
    host = backend.to_numpy
    chex.assert_trees_all_close(host(tree.add(a, b)), host(tree.scale(a, 2.0)))
    chex.assert_trees_all_equal(host(tree.sub(a, b)), host(tree.zeros_like(a)))


def test_vdot_global_norm_and_size():
    a = _params()
    squares = 0.0 + sum(float(np.sum(x.astype(np.float64) ** 2)) for x in tree.leaves(a))
    assert float(tree.vdot(a, a)) == pytest.approx(squares)
    assert float(tree.global_norm(a)) == pytest.approx(np.sqrt(squares))
    assert tree.size(a) == 6 + 3 + 3
    assert tree.global_norm(()) == 0.0


def test_assert_same_structure_names_the_missing_and_extra_leaves():
    expected = {"W": np.ones(2), "b": np.ones(2)}
    tree.assert_same_structure(expected, {"W": np.zeros(2), "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads does not match.*missing leaves \['b'\]"):
        tree.assert_same_structure(expected, {"W": np.ones(2)}, what="grads")
    with pytest.raises(ValueError, match=r"unexpected leaves \['c'\]"):
        tree.assert_same_structure(expected, {**expected, "c": np.ones(1)})
    with pytest.raises(ValueError, match="expected"):  # same paths, different node types
        tree.assert_same_structure((np.ones(1),), [np.ones(1)])
