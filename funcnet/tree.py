"""The few pytree operations funcnet uses, on optree. No other module imports optree.

Trees are nested dicts, tuples and lists with arrays at the leaves; ``None`` and ``()`` are
empty nodes (optree's default), so layers without params contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optree

Tree = Any
PyTreeSpec = optree.PyTreeSpec


def map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """``fn`` applied leaf-wise over one or more trees of the same structure."""
    return optree.tree_map(fn, tree, *rest)


def leaves(tree: Tree) -> list[Any]:
    """The leaves in a fixed (sorted-key) order."""
    return optree.tree_leaves(tree)


def flatten(tree: Tree) -> tuple[list[Any], PyTreeSpec]:
    """``(leaves, spec)``; :func:`unflatten` inverts it."""
    return optree.tree_flatten(tree)


def flatten_like(spec: PyTreeSpec, tree: Tree) -> list[Any] | None:
    """The leaves of ``tree`` when it has structure ``spec``, else None (a tenth of a flatten's cost)."""
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
    """One leaf of ``tree`` (None when it has none), found without flattening all of it."""
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
    """The tree of ``spec`` with ``leaves_`` in its leaf slots."""
    return optree.tree_unflatten(spec, leaves_)


def structure(tree: Tree) -> PyTreeSpec:
    """The tree's structure, comparable with ``==``."""
    return optree.tree_structure(tree)


def path_str(path: tuple[Any, ...]) -> str:
    """A leaf path as a readable string, e.g. ``params/1/W``."""
    return "/".join(str(p) for p in path) if path else "<root>"


def _entry_name(entry: Any) -> str:
    # NamedTuple fields by name (params/0/W, not 0/0/W): paths are checkpoint keys and error text
    return str(getattr(entry, "field", None) or entry.entry)


def _accessor_paths(tree: Tree) -> tuple[list[str], list[Any]]:
    accessors, leaves_, _ = optree.tree_flatten_with_accessor(tree)
    names = ["/".join(_entry_name(e) for e in acc) or "<root>" for acc in accessors]
    return names, leaves_


def leaves_with_paths(tree: Tree) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` with paths as strings such as ``params/1/W``."""
    names, leaves_ = _accessor_paths(tree)
    return list(zip(names, leaves_, strict=True))


def paths(tree: Tree) -> list[str]:
    """The leaf paths of ``tree`` as strings, in leaf order (NamedTuple fields by name)."""
    return _accessor_paths(tree)[0]


def zeros_like(tree: Tree) -> Tree:
    """A tree of zeros with the shapes and dtypes (and backend) of ``tree``."""
    from funcnet.backend import namespace

    return map(lambda x: namespace(x).zeros_like(x), tree)


def add(a: Tree, b: Tree) -> Tree:
    """Leaf-wise ``a + b``."""
    return map(lambda x, y: x + y, a, b)


def sub(a: Tree, b: Tree) -> Tree:
    """Leaf-wise ``a - b``."""
    return map(lambda x, y: x - y, a, b)


def scale(tree: Tree, factor: Any) -> Tree:
    """Leaf-wise ``factor * x`` (a Python float keeps float32 leaves float32)."""
    return map(lambda x: x * factor, tree)


def vdot(a: Tree, b: Tree) -> Any:
    """The sum over all leaves of the element-wise product of ``a`` and ``b``."""
    from funcnet.backend import namespace

    total = 0.0
    for x, y in zip(leaves(a), leaves(b), strict=True):
        total = total + namespace(x).sum(x * y)
    return total


def global_norm(tree: Tree) -> Any:
    """The L2 norm of all leaves together (a 0-d array on the leaves' backend)."""
    from funcnet.backend import namespace

    leaves_ = leaves(tree)
    if not leaves_:
        return 0.0
    xp = namespace(*leaves_)
    total = sum(xp.sum(x * x) for x in leaves_)
    return xp.sqrt(total)


def size(tree: Tree) -> int:
    """The number of array elements over all leaves."""
    return sum(math.prod(x.shape) for x in leaves(tree))


def assert_same_structure(expected: Tree, got: Tree, what: str = "tree") -> None:
    """Raise ValueError naming the first path where ``got`` differs in structure from ``expected``."""
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
