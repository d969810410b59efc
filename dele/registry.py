"""Component registry and aw_nas-style plugin discovery.

Every pluggable class derives from :class:`Component`. A base class opts into a
registry table by setting ``REGISTRY`` (for example ``"arch_embedder"``). Each subclass
that defines ``NAME`` in its own body is registered under that name when its ``class``
statement runs, as in aw_nas.

A duplicate name inside the ``dele`` package is a programming error and raises. A class
from outside the package (a plugin, or user code) may replace an entry on purpose: the
later class wins and a warning names both classes, which is how aw_nas plugins override
built-in components.

Plugins are ``.py`` files under ``$AWNAS_PLUGIN_DIR``, else ``$AWNAS_HOME/plugins``, else
``~/awnas/plugins``. They are imported by :func:`load_plugins`, which the command-line
entry points call once, and which :func:`get_class` calls on its first miss.
"""

import fnmatch
import importlib.util
import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_TABLES: dict[str, dict[str, type]] = {}
_plugins_loaded = False
_last_report = None

# Registry names that ship in the repository's ``plugin/`` folder rather than in the package.
SHIPPED_PLUGIN_NAMES = {"resnet_lstm", "resnexta_lstm"}


class RegistryError(LookupError):
    """An unknown registry table or name, or a duplicate name inside the package."""


class Component:
    """Base of every registered class.

    Attributes:
        REGISTRY: table name, set by the base class of a family of components.
        NAME: entry name, set by each concrete subclass that should be registered.
    """

    REGISTRY: str | None = None
    NAME: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.REGISTRY is not None and "NAME" in cls.__dict__ and cls.NAME:
            register(cls.REGISTRY, cls.NAME, cls)

    @classmethod
    def get_class_(cls, name):
        """Look ``name`` up in this class's registry table (aw_nas spelling)."""
        return get_class(cls.REGISTRY, name)

    @classmethod
    def all_classes_(cls):
        """Return the ``{name: class}`` table of this class's registry."""
        return dict(_TABLES.get(cls.REGISTRY, {}))


def _is_package_class(cls):
    return cls.__module__ == "dele" or cls.__module__.startswith("dele.")


def register(table, name, cls):
    """Register ``cls`` under ``name`` in ``table``.

    Raises:
        RegistryError: if a different class of the ``dele`` package already has the name
            and ``cls`` is also from the package.
    """
    entries = _TABLES.setdefault(table, {})
    previous = entries.get(name)
    if previous is not None and previous is not cls:
        old = f"{previous.__module__}.{previous.__qualname__}"
        new = f"{cls.__module__}.{cls.__qualname__}"
        if _is_package_class(cls) and _is_package_class(previous):
            raise RegistryError(f"duplicate {table} name {name!r}: {old} and {new}")
        if old != new:  # the same plugin file imported again replaces its class silently
            warnings.warn(f"{table} {name!r}: {new} replaces {old}", stacklevel=3)
            logger.warning("%s %r: %s replaces %s", table, name, new, old)
    entries[name] = cls
    return cls


def list_names(table, pattern="*"):
    """Return the sorted names registered in ``table`` that match a glob ``pattern``."""
    return sorted(fnmatch.filter(_TABLES.get(table, {}), pattern))


def _missing_name_message(table, name):
    known = ", ".join(list_names(table)) or "none"
    message = f"unknown {table} {name!r}; registered names: {known}"
    if name in SHIPPED_PLUGIN_NAMES:
        message += (
            f". {name!r} comes from the repository's plugin/ folder: from the repository root, link it "
            f"into the plugin directory with `mkdir -p {plugin_dir()} && ln -s \"$PWD/plugin\" {plugin_dir()}/dele` "
            "(set AWNAS_HOME to choose another home)"
        )
    else:
        message += f". Plugins are read from {plugin_dir()}"
    return message


def get_class(table, name):
    """Return the class registered as ``name`` in ``table``.

    Plugins are loaded on the first miss. Raises :class:`RegistryError` listing the
    registered names when the name is still unknown.
    """
    entries = _TABLES.get(table, {})
    if name not in entries and not _plugins_loaded:
        load_plugins()
        entries = _TABLES.get(table, {})
    if name not in entries:
        raise RegistryError(_missing_name_message(table, name))
    return entries[name]


def awnas_home():
    """Return the aw_nas home: ``$AWNAS_HOME`` or ``~/awnas``, absolute. Creates nothing."""
    return Path(os.path.abspath(os.path.expanduser(os.environ.get("AWNAS_HOME", "~/awnas"))))


def plugin_dir():
    """Return ``$AWNAS_PLUGIN_DIR`` or ``<home>/plugins``. Creates nothing."""
    override = os.environ.get("AWNAS_PLUGIN_DIR")
    if override:
        return Path(os.path.abspath(os.path.expanduser(override)))
    return awnas_home() / "plugins"


@dataclass
class PluginReport:
    """Outcome of one plugin scan: imported files and ``{path: error}`` of failed ones."""

    directory: Path
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _plugin_files(directory):
    """Yield plugin files top-down, following symlinked folders, in sorted order."""
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs.sort()
        for filename in sorted(files):
            path = os.path.join(root, filename)
            if filename.endswith(".py") and not filename.startswith("test_") and os.path.isfile(path):
                yield path


def _module_name(path):
    """Module name of a plugin file, derived from its folder as aw_nas does."""
    folder, filename = os.path.split(path)
    for char in "/|.":
        folder = folder.replace(char, "__")
    return f"{folder}_{Path(filename).stem}"


def _import_plugin(path):
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def load_plugins(directory=None):
    """Import every plugin file under ``directory`` (default :func:`plugin_dir`).

    Files are ``*.py`` not starting with ``test_``, found recursively through symlinked
    folders. A file that fails to import is logged with its traceback and skipped; the
    classes it registered before failing stay registered. A missing folder is not an error.

    Returns:
        PluginReport: the loaded and failed files.
    """
    global _plugins_loaded, _last_report
    _plugins_loaded = True
    directory = Path(directory) if directory is not None else plugin_dir()
    report = PluginReport(directory=directory)

    if directory.is_dir():
        for path in _plugin_files(directory):
            try:
                _import_plugin(path)
            except Exception as error:  # noqa: BLE001 - a broken plugin must not stop the others
                report.failed[path] = f"{type(error).__name__}: {error}"
                logger.error("failed to import plugin %s:\n%s", path, traceback.format_exc())
            else:
                report.loaded.append(path)

    logger.info(
        "plugins in %s: %d loaded, %d failed%s",
        directory,
        len(report.loaded),
        len(report.failed),
        f" ({', '.join(report.failed)})" if report.failed else "",
    )
    _last_report = report
    return report


def last_plugin_report():
    """Return the :class:`PluginReport` of the latest scan, or None before any."""
    return _last_report
