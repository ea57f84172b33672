"""Every public class and function (a name in some module's ``__all__``) has a docstring
with a runnable example (a ``>>>`` doctest, run by ``pytest --doctest-modules``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import fptt_ext


def public_objects() -> list[tuple[str, object]]:
    """``(qualified name, object)`` of every class and function of this package in an ``__all__``."""
    names = ["fptt_ext"] + [m.name for m in pkgutil.walk_packages(fptt_ext.__path__, "fptt_ext.")]
    found = {}
    for name in names:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith("fptt_ext"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.items())


def test_public_api_has_examples():
    objects = public_objects()
    assert len(objects) > 50
    missing = []
    for qualname, obj in objects:
        own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not own or ">>>" not in own:
            missing.append(qualname)
    assert not missing, f"public names without a docstring example: {missing}"
