"""The ``>>>`` examples in funcnet's docstrings run, and pass, as doctests.

Every module of the package is found by walking it (a new module is picked up without an
entry here) and its doctests run with :mod:`doctest`, in a temporary working folder (an example
may write a file). A module whose examples fail fails its own test, naming the example. So that
the suite cannot pass by finding nothing, the examples that ran are counted and must reach
``MIN_EXAMPLES``; raise it as the docstrings grow. Every public module also has its page in the
API reference (``docs/api/<module>.md``, built by mkdocs).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
from pathlib import Path

import pytest

import funcnet

ROOT = Path(__file__).resolve().parent.parent
API_DOCS = ROOT / "docs" / "api"
MIN_EXAMPLES = 480  # 509 ran when this was written
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    names = ["funcnet"]
    for info in pkgutil.walk_packages(funcnet.__path__, prefix="funcnet."):
        names.append(info.name)
    return sorted(names)


MODULES = module_names()
_RAN: dict[str, int] = {}


def run_doctests(name: str) -> tuple[int, int, str]:
    """(examples attempted, failed, the runner's report) for the module ``name``."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for test in sorted(finder.find(module, name), key=lambda t: t.name):
        if test.examples and test.name.startswith(name):  # not names a module merely imports
            runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    return result.attempted, result.failed, report.getvalue()


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempted, failed, report = run_doctests(name)
    _RAN[name] = attempted
    assert failed == 0, f"{failed} of {attempted} doctest examples of {name} failed:\n{report}"


def test_enough_doctest_examples_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    counts = {name: _RAN[name] if name in _RAN else run_doctests(name)[0] for name in MODULES}
    total = sum(counts.values())
    listing = ", ".join(f"{name} {n}" for name, n in counts.items())
    print(f"{total} doctest examples in {len(counts)} modules: {listing}")
    assert total >= MIN_EXAMPLES, f"only {total} doctest examples ran (at least {MIN_EXAMPLES} expected): {listing}"


def test_the_runner_sees_failures():
    """The machinery itself: a failing example is counted as a failure, a passing one as run."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n2\n>>> 2 + 2\n5\n", {}, "sample", None, 0)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    runner.run(test, out=lambda _: None)
    assert tuple(runner.summarize(verbose=False)) == (1, 2)


def public_top_level_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(funcnet.__path__) if not info.name.startswith("_"))


@pytest.mark.parametrize("name", public_top_level_modules())
def test_every_public_module_has_an_api_page(name):
    page = API_DOCS / f"{name}.md"
    assert page.is_file(), f"docs/api/{name}.md is missing (and its line in mkdocs.yml's nav)"
    assert f"::: funcnet.{name}" in page.read_text(encoding="utf-8")
    assert f"api/{name}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
