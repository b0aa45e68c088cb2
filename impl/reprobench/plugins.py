"""Plugins: a module of the user's own package that registers components and claims on import.

Loaded by `--plugin MODULE` (any command) or, once installed, through the entry-point group
`reprobench.plugins` (`[project.entry-points."reprobench.plugins"] acme = "acme.reprobench_plugin"`), so
`pip install`ing a package is enough. A plugin uses the public surface only (`reprobench.__all__` and the
modules in `reprobench.PUBLIC_MODULES`). The five design documents' components and claims are such a
plugin too (`reprobench_documents`, installed with reprobench under the same entry-point group).
This module imports nothing of the registry: the registry calls it to load what is installed.
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "reprobench.plugins"
_LOADED: set[str] = set()
_IGNORE_INSTALLED = False  # set by ignore_installed_plugins()


@dataclass(frozen=True)
class LoadedPlugin:
    """What a report records of a plugin (measure.environment.plugin_provenance reads it)."""

    module: str  # the module imported, e.g. 'acme_attention.reprobench_plugin'
    entry_point: str | None  # 'acme = acme_attention.reprobench_plugin' when installed, None for --plugin
    distribution: str | None  # the entry point's distribution name, when installed
    imports: tuple[str, ...]  # top-level modules it imports, or that were first imported while it loaded


LOADED_PLUGINS: list[LoadedPlugin] = []


def _top_level_imports(module: str) -> set[str]:
    """Top-level names the module's source imports (`import x.y`, `from x import y`); empty if unreadable."""
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(spec.loader.get_source(module) or "") if spec is not None and spec.loader else None
    except (ImportError, SyntaxError, ValueError, AttributeError, OSError):
        return set()
    names = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def _import_recorded(module: str, load, entry_point: str | None = None, distribution: str | None = None):
    """load() the plugin and record it, with the packages it brought in (what the report's provenance lists)."""
    before = {name.partition(".")[0] for name in list(sys.modules)}
    result = load()
    first_imported = {name.partition(".")[0] for name in list(sys.modules)} - before
    # What its own package's loaded modules import by name: packages imported before it (torch) count too.
    package = module.partition(".")[0]
    own = [name for name in list(sys.modules) if name == package or name.startswith(package + ".")]
    named = set().union(*(_top_level_imports(name) for name in own)) if own else set()
    imports = (first_imported | named) - set(sys.stdlib_module_names) - {"__future__", package}
    LOADED_PLUGINS.append(LoadedPlugin(module, entry_point, distribution, tuple(sorted(imports))))
    return result


def ignore_installed_plugins() -> None:
    """From now on, in this process, load only reprobench's own entry points (those of the `reprobench`
    distribution) from ENTRY_POINT_GROUP; `--plugin` still loads a module by name. reprobench's own test
    suites call it: they test its own components, and a plugin package that happens to be installed in the
    environment must not join them."""
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
        _import_recorded(module, lambda: importlib.import_module(module))
    except ImportError as exc:
        raise PluginError(f"--plugin {module}: cannot import it ({type(exc).__name__}: {exc}); is its package "
                          "installed or on PYTHONPATH?") from None
    except ValueError as exc:  # a clash with a registered component or claim
        raise PluginError(f"--plugin {module}: {exc}") from None
    _LOADED.add(module)


def load_plugins(modules: list[str] | None) -> None:
    # Installed plugins first: a --plugin module that reuses one of their names then fails at its own
    # register() call, as a PluginError naming both, instead of breaking the installed one's import.
    load_entry_point_plugins()
    for module in modules or ():
        load_plugin(module)


def _is_own(ep) -> bool:
    """An entry point of the reprobench distribution itself (by its distribution, or, where the metadata does
    not say, by a module under reprobench)."""
    dist = getattr(getattr(ep, "dist", None), "name", None)
    if dist is not None:
        return dist.lower().replace("_", "-") == "reprobench"
    return ep.module.partition(".")[0].startswith("reprobench")


def load_entry_point_plugins() -> None:
    """Every plugin installed under the entry-point group, once (only reprobench's own after
    ignore_installed_plugins())."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _LOADED or (_IGNORE_INSTALLED and not _is_own(ep)):
            continue
        try:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            _import_recorded(ep.module, ep.load, f"{ep.name} = {ep.value}", dist)
        except Exception as exc:  # a broken installed plugin must say which one it is
            raise PluginError(f"installed plugin {ep.name} = {ep.value} (entry point group {ENTRY_POINT_GROUP}) "
                              f"failed to load: {type(exc).__name__}: {exc}") from None
        _LOADED.add(ep.value)

