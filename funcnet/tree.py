"""The few pytree operations funcnet uses, on optree. No other module imports optree.

Trees are nested dicts, tuples and lists with arrays at the leaves; ``None`` and ``()`` are
empty nodes (optree's default), so layers without params contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import optree

__all__ = [
    "PyTreeSpec",
    "Tree",
    "add",
    "any_leaf",
    "assert_same_structure",
    "flatten",
    "flatten_like",
    "global_norm",
    "leaves",
    "leaves_with_paths",
    "map",
    "path_str",
    "paths",
    "scale",
    "size",
    "structure",
    "sub",
    "unflatten",
    "vdot",
    "zeros_like",
]

Tree = Any
PyTreeSpec = optree.PyTreeSpec


def map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """``fn`` applied leaf-wise over one or more trees of the same structure.

    Args:
        fn: a function of as many leaves as there are trees.
        tree: a tree.
        *rest: more trees of ``tree``'s structure.

    Returns:
        A tree of ``tree``'s structure holding ``fn``'s results.

    Examples:
        >>> map(lambda x, y: x + y, {"a": 1, "b": (2,)}, {"a": 10, "b": (20,)})
        {'a': 11, 'b': (22,)}
    """
    return optree.tree_map(fn, tree, *rest)


def leaves(tree: Tree) -> list[Any]:
    """The leaves in a fixed (sorted-key) order.

    Args:
        tree: a tree.

    Returns:
        The leaves, dict keys sorted.

    Examples:
        >>> leaves({"b": 2, "a": (1, None)})
        [1, 2]
    """
    return optree.tree_leaves(tree)


def flatten(tree: Tree) -> tuple[list[Any], PyTreeSpec]:
    """``(leaves, spec)``; `unflatten` inverts it.

    Args:
        tree: a tree.

    Returns:
        The leaves and the tree's structure.

    Examples:
        >>> leaves_, spec = flatten({"a": 1, "b": 2})
        >>> leaves_, unflatten(spec, [3, 4])
        ([1, 2], {'a': 3, 'b': 4})
    """
    return optree.tree_flatten(tree)


def flatten_like(spec: PyTreeSpec, tree: Tree) -> list[Any] | None:
    """The leaves of ``tree`` when it has structure ``spec``, else None (a tenth of a flatten's cost).

    Args:
        spec: the expected structure.
        tree: a tree whose leaves should be arrays.

    Returns:
        The leaves, or None when ``tree`` does not have structure ``spec``.

    Examples:
        >>> import numpy as np
        >>> spec = structure({"W": np.ones(2)})
        >>> flatten_like(spec, {"W": np.zeros(2)})[0].tolist(), flatten_like(spec, {"V": np.zeros(2)})
        ([0.0, 0.0], None)
    """
    try:
        leaves_ = spec.flatten_up_to(tree)
    except (ValueError, TypeError):
        return None
    # flatten_up_to stops at spec's leaves: anything but an array (a subtree, a scalar) standing
    # where a leaf should be is a mismatch, left to the full flatten to name
    for x in leaves_:
        if not hasattr(x, "shape"):
            return None
    return leaves_


def any_leaf(tree: Tree) -> Any:
    """One leaf of ``tree`` (None when it has none), found without flattening all of it.

    Args:
        tree: a tree.

    Returns:
        Its first array leaf (or the first leaf optree finds), None for an empty tree.

    Examples:
        >>> import numpy as np
        >>> any_leaf(((), {"W": np.ones(2)})).shape
        (2,)
    """
    if isinstance(tree, dict):
        children = tree.values()
    elif isinstance(tree, list | tuple):
        children = tree
    elif tree is None:
        return None
    elif hasattr(tree, "dtype"):
        return tree
    else:
        found = leaves(tree)
        return found[0] if found else None
    for child in children:
        leaf = any_leaf(child)
        if leaf is not None:
            return leaf
    return None


def unflatten(spec: PyTreeSpec, leaves_: list[Any]) -> Tree:
    """The tree of ``spec`` with ``leaves_`` in its leaf slots.

    Args:
        spec: a structure from `flatten` or `structure`.
        leaves_: as many leaves as ``spec`` has.

    Returns:
        The tree.

    Examples:
        >>> unflatten(structure((1, [2])), ["a", "b"])
        ('a', ['b'])
    """
    return optree.tree_unflatten(spec, leaves_)


def structure(tree: Tree) -> PyTreeSpec:
    """The tree's structure, comparable with ``==``.

    Args:
        tree: a tree.

    Returns:
        Its structure (an optree ``PyTreeSpec``).

    Examples:
        >>> structure({"a": 1}) == structure({"a": 2.0})
        True
    """
    return optree.tree_structure(tree)


def path_str(path: tuple[Any, ...]) -> str:
    """A leaf path as a readable string, e.g. ``params/1/W``.

    Args:
        path: the path's entries.

    Returns:
        The entries joined by ``/``; ``<root>`` for the empty path.

    Examples:
        >>> path_str(("params", 1, "W")), path_str(())
        ('params/1/W', '<root>')
    """
    return "/".join(str(p) for p in path) if path else "<root>"


def _entry_name(entry: Any) -> str:
    # NamedTuple fields by name (params/0/W, not 0/0/W): paths are checkpoint keys and error text
    return str(getattr(entry, "field", None) or entry.entry)


def _accessor_paths(tree: Tree) -> tuple[list[str], list[Any]]:
    accessors, leaves_, _ = optree.tree_flatten_with_accessor(tree)
    names = ["/".join(_entry_name(e) for e in acc) or "<root>" for acc in accessors]
    return names, leaves_


def leaves_with_paths(tree: Tree) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` with paths as strings such as ``params/1/W``.

    Args:
        tree: a tree.

    Returns:
        ``(path, leaf)`` pairs in leaf order.

    Examples:
        >>> leaves_with_paths({"params": ({"W": 1},)})
        [('params/0/W', 1)]
    """
    names, leaves_ = _accessor_paths(tree)
    return list(zip(names, leaves_, strict=True))


def paths(tree: Tree) -> list[str]:
    """The leaf paths of ``tree`` as strings, in leaf order (NamedTuple fields by name).

    Args:
        tree: a tree.

    Returns:
        One string a leaf.

    Examples:
        >>> paths({"b": [1, 2], "a": 0})
        ['a', 'b/0', 'b/1']
    """
    return _accessor_paths(tree)[0]


def _namespace(x: Any) -> ModuleType:
    """The array module of one leaf. Its own ``__array_namespace__`` where it has one (NumPy 2,
    jax, array_api_strict), array_api_compat's look-up otherwise (cupy): this module sits below
    `funcnet.backend`, which maps trees with it, and must not import it back."""
    get = getattr(x, "__array_namespace__", None)
    if get is not None:
        return get()
    import array_api_compat

    return array_api_compat.array_namespace(x)


def zeros_like(tree: Tree) -> Tree:
    """A tree of zeros with the shapes and dtypes (and backend) of ``tree``.

    Args:
        tree: a tree of arrays.

    Returns:
        A tree of zero arrays of the same structure, shapes, dtypes and backend.

    Examples:
        >>> import numpy as np
        >>> zeros_like({"W": np.ones(2, np.float32)})["W"].tolist()
        [0.0, 0.0]
    """
    return map(lambda x: _namespace(x).zeros_like(x), tree)


def add(a: Tree, b: Tree) -> Tree:
    """Leaf-wise ``a + b``.

    Args:
        a: a tree.
        b: a tree of ``a``'s structure.

    Returns:
        The leaf-wise sums.

    Examples:
        >>> add((1, 2), (10, 20))
        (11, 22)
    """
    return map(lambda x, y: x + y, a, b)


def sub(a: Tree, b: Tree) -> Tree:
    """Leaf-wise ``a - b``.

    Args:
        a: a tree.
        b: a tree of ``a``'s structure.

    Returns:
        The leaf-wise differences.

    Examples:
        >>> sub((10, 20), (1, 2))
        (9, 18)
    """
    return map(lambda x, y: x - y, a, b)


def scale(tree: Tree, factor: Any) -> Tree:
    """Leaf-wise ``factor * x`` (a Python float keeps float32 leaves float32).

    Args:
        tree: a tree of arrays.
        factor: a scalar.

    Returns:
        The scaled tree.

    Examples:
        >>> import numpy as np
        >>> scale({"W": np.ones(2, np.float32)}, 0.5)["W"].dtype
        dtype('float32')
    """
    return map(lambda x: x * factor, tree)


def vdot(a: Tree, b: Tree) -> Any:
    """The sum over all leaves of the element-wise product of ``a`` and ``b``.

    Args:
        a: a tree of arrays.
        b: a tree of arrays of ``a``'s structure.

    Returns:
        A scalar (0-d array) on the leaves' backend; ``0.0`` for empty trees.

    Examples:
        >>> import numpy as np
        >>> float(vdot({"W": np.ones(3)}, {"W": np.arange(3.0)}))
        3.0
    """
    total = 0.0
    for x, y in zip(leaves(a), leaves(b), strict=True):
        total = total + _namespace(x).sum(x * y)
    return total


def global_norm(tree: Tree) -> Any:
    """The L2 norm of all leaves together (a 0-d array on the leaves' backend).

    Args:
        tree: a tree of arrays.

    Returns:
        ``sqrt(sum of squares)`` over every element; ``0.0`` for an empty tree.

    Examples:
        >>> import numpy as np
        >>> float(global_norm((np.array([3.0]), {"b": np.array([4.0])})))
        5.0
    """
    leaves_ = leaves(tree)
    if not leaves_:
        return 0.0
    xp = _namespace(leaves_[0])
    total = sum(xp.sum(x * x) for x in leaves_)
    return xp.sqrt(total)


def size(tree: Tree) -> int:
    """The number of array elements over all leaves.

    Args:
        tree: a tree of arrays.

    Returns:
        The element count.

    Examples:
        >>> import numpy as np
        >>> size({"W": np.ones((2, 3)), "b": np.ones(3)})
        9
    """
    return sum(math.prod(x.shape) for x in leaves(tree))


def assert_same_structure(expected: Tree, got: Tree, what: str = "tree") -> None:
    """Raise ValueError naming the first path where ``got`` differs in structure from ``expected``.

    Args:
        expected: the tree of the expected structure.
        got: the tree to check.
        what: what ``got`` is, for the message.

    Raises:
        ValueError: the structures differ; the message names missing and unexpected leaves.

    Examples:
        >>> assert_same_structure({"a": 1}, {"a": 2})
        >>> assert_same_structure({"a": 1}, {"b": 2}, "params")
        Traceback (most recent call last):
        ...
        ValueError: params does not match the expected structure: missing leaves ['a']; unexpected leaves ['b']
    """
    if structure(expected) == structure(got):
        return
    want, have = set(paths(expected)), set(paths(got))
    missing = sorted(want - have)
    extra = sorted(have - want)
    detail = []
    if missing:
        detail.append(f"missing leaves {missing[:5]}")
    if extra:
        detail.append(f"unexpected leaves {extra[:5]}")
    if not detail:
        detail.append(f"expected {structure(expected)}, got {structure(got)}")
    raise ValueError(f"{what} does not match the expected structure: {'; '.join(detail)}")
