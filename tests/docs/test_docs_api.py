"""Every parameter of the entry points is described in their docstrings.

``help(wsline.serve)`` and the API reference (``make docs``) show the
docstrings; these tests keep them complete: each parameter in the signature
has a ``:param name:`` field, and no field names a parameter that is gone.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

import wsline
import wsline.sync

_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+):", re.MULTILINE)


def documented_params(doc: str | None) -> list[str]:
    """The names of the ``:param name:`` fields of a docstring, in order."""
    return _PARAM.findall(doc or "")


ENTRY_POINTS: dict[str, tuple[Callable[..., Any], str | None]] = {
    "wsline.serve": (wsline.serve, wsline.serve.__doc__),
    "wsline.connect": (wsline.connect.__init__, wsline.connect.__doc__),
    "wsline.sync.connect": (wsline.sync.connect, wsline.sync.connect.__doc__),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_parameter_is_described(name: str) -> None:
    function, doc = ENTRY_POINTS[name]
    params = [p for p in inspect.signature(function).parameters if p != "self"]
    described = documented_params(doc)
    missing = [p for p in params if p not in described]
    assert not missing, f"{name}: parameters without a ':param' field in the docstring: {missing}"
    stale = [p for p in described if p not in params]
    assert not stale, f"{name}: ':param' fields for parameters that do not exist: {stale}"
    assert len(described) == len(set(described)), f"{name}: a parameter is described twice"


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_parameters_are_described_in_signature_order(name: str) -> None:
    function, doc = ENTRY_POINTS[name]
    params = [p for p in inspect.signature(function).parameters if p != "self"]
    assert documented_params(doc) == params


def test_help_shows_every_parameter_of_serve() -> None:
    """What ``help(wsline.serve)`` prints (pydoc renders the docstring) names them all."""
    import pydoc

    text = pydoc.render_doc(wsline.serve, renderer=pydoc.plaintext)
    for param in inspect.signature(wsline.serve).parameters:
        assert f":param {param}:" in text


PUBLIC_MODULES = [
    "wsline",
    "wsline.errors",
    "wsline.sync",
    "wsline.gate",
    "wsline.http",
    "wsline.log",
    "wsline.hub",
    "wsline.hub_redis",
    "wsline.aio.fanout",
    "wsline.aio.loop",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_class_and_function_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no docstring"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert not undocumented, f"{module_name}: no docstring for {undocumented}"


def test_the_parser_reads_field_lists() -> None:
    doc = """Summary.

    :param uri: the address.
    :param int port: typed field.
    :returns: nothing.
    :raises ValueError: never.
    """
    assert documented_params(doc) == ["uri", "port"]
