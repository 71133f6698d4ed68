"""The docstring examples of losses, ops, gradcheck and initializers run, and each module says
what it exports.

``pytest --doctest-modules`` collects the docstrings of functions and classes only. The
constants (``ops.add``, ``losses.softmax_cross_entropy``, ``initializers.book``) are values,
documented by the string literal after their assignment (what mkdocstrings shows); those
strings are found here with :mod:`ast` and run through :mod:`doctest` the same way.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import itertools
import types

import pytest

from funcnet import gradcheck, initializers, losses, ops

MODULES = [losses, ops, gradcheck, initializers]
MODULE_IDS = [m.__name__ for m in MODULES]


def _attribute_docstrings(module: types.ModuleType) -> dict[str, str]:
    """``name -> docstring`` for every module-level ``name = ...`` followed by a string literal."""
    body = ast.parse(inspect.getsource(module)).body
    docs = {}
    for node, after in itertools.pairwise(body):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name):
                docs[target.id] = after.value.value
    return docs


def _documented(module: types.ModuleType) -> dict[str, str]:
    """``public name -> its docstring`` (the object's own, or the literal after a constant)."""
    literals = _attribute_docstrings(module)
    docs = {}
    for name in module.__all__:
        obj = getattr(module, name)
        own = obj.__doc__ if inspect.isfunction(obj) or inspect.isclass(obj) else None
        docs[name] = own or literals.get(name, "")
    return docs


CONSTANT_EXAMPLES = [
    pytest.param(module, name, id=f"{module.__name__}.{name}")
    for module in MODULES
    for name in module.__all__
    if not (inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name)))
]


@pytest.mark.parametrize(("module", "name"), CONSTANT_EXAMPLES)
def test_the_example_of_a_constant_runs(module, name):
    text = _attribute_docstrings(module).get(name, "")
    test = doctest.DocTestParser().get_doctest(text, dict(vars(module)), f"{module.__name__}.{name}",
                                               module.__file__, 0)
    assert test.examples, f"{module.__name__}.{name} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_every_docstring_example_of_the_module_runs(module):
    # the same collection as --doctest-modules (functions, classes, the module), in the suite
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran = 0
    for test in finder.find(module):
        runner.run(test)
        ran += len(test.examples)
    assert runner.summarize(verbose=False).failed == 0
    assert ran > 0


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_all_lists_the_public_names_only(module):
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "a name twice in __all__"
    for name in exported:
        assert not name.startswith("_") and hasattr(module, name), name
        obj = getattr(module, name)
        assert not isinstance(obj, types.ModuleType), f"{name} is an imported module"
        origin = getattr(obj, "__module__", module.__name__)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert origin == module.__name__, f"{name} is imported from {origin}"
    # everything the module defines without an underscore is exported
    defined = {name for name, obj in vars(module).items()
               if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
               and obj.__module__ == module.__name__}
    assert defined <= exported, defined - exported
    assert not {"np", "math", "Any", "Callable", "NamedTuple", "numbers"} & exported


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_every_public_name_has_a_full_docstring(module):
    for name, doc in _documented(module).items():
        assert doc.strip(), f"{module.__name__}.{name} has no docstring"
        summary = doc.strip().splitlines()[0]
        assert summary.strip(), name
        assert ">>>" in doc, f"{module.__name__}.{name} has no example"
        obj = getattr(module, name)
        if inspect.isfunction(obj) and inspect.signature(obj).parameters:
            assert "Args:" in doc and "Returns:" in doc, f"{module.__name__}.{name}: Args/Returns"
