"""Plugins: a module of the user's own package that registers components and claims on import.

Loaded by `--plugin MODULE` (any command) or, once installed, through the entry-point group
`reprobench.plugins` (`[project.entry-points."reprobench.plugins"] acme = "acme.reprobench_plugin"`), so
`pip install`ing a package is enough. A plugin uses the public surface only: `reprobench.registry`
(register, ComponentSpec, Implementations, SampleInput, ErrorInput) and `reprobench.claims` (claim,
experiment, Outcome, RunContext and the decision helpers).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "reprobench.plugins"
_LOADED: set[str] = set()
_IGNORE_INSTALLED = False  # set by ignore_installed_plugins()


def ignore_installed_plugins() -> None:
    """From now on, in this process, do not load the plugins installed under ENTRY_POINT_GROUP (`--plugin`
    still loads a module by name). reprobench's own test suites call it: they test its own components, and a
    plugin package that happens to be installed in the environment must not join them."""
    global _IGNORE_INSTALLED
    _IGNORE_INSTALLED = True


class PluginError(ValueError):
    """A plugin that cannot be loaded; the message is one line naming it."""


def load_plugin(module: str) -> None:
    """Import `module` (it registers on import); an import failure is a PluginError naming it."""
    if module in _LOADED:
        return
    if not isinstance(module, str) or not module.strip():
        raise PluginError(f"--plugin {module!r}: expected a module name such as 'acme.reprobench_plugin'")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(f"--plugin {module}: cannot import it ({type(exc).__name__}: {exc}); is its package "
                          "installed or on PYTHONPATH?") from None
    except ValueError as exc:  # a clash with a registered component or claim
        raise PluginError(f"--plugin {module}: {exc}") from None
    _LOADED.add(module)


def load_plugins(modules: list[str] | None) -> None:
    from reprobench.registry import load_all

    # Built-ins (and installed plugins) first: a --plugin module that reuses one of their names then fails
    # at its own register() call, as a PluginError naming both, instead of breaking the built-in's import.
    load_all()
    for module in modules or ():
        load_plugin(module)


def load_entry_point_plugins() -> None:
    """Every plugin installed under the entry-point group, once (none after ignore_installed_plugins())."""
    if _IGNORE_INSTALLED:
        return
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _LOADED:
            continue
        try:
            ep.load()
        except Exception as exc:  # a broken installed plugin must say which one it is
            raise PluginError(f"installed plugin {ep.name} = {ep.value} (entry point group {ENTRY_POINT_GROUP}) "
                              f"failed to load: {type(exc).__name__}: {exc}") from None
        _LOADED.add(ep.value)
