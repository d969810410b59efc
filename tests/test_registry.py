"""Component registry: registration, duplicates, look-ups, home folders and plugin loading."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import dele.embedders  # noqa: F401 - registers the built-in embedders before the tables are copied
import dele.predictors  # noqa: F401
import dele.spaces  # noqa: F401
from dele import registry
from dele.embedders import build_embedder
from dele.registry import Component, RegistryError, get_class, list_names, load_plugins, register

TABLE = "registry_test"


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch, tmp_path):
    """Give each test a copy of the registry tables and an empty plugin folder.

    Plugin modules imported from ``tmp_path`` are removed from ``sys.modules`` afterwards.
    """
    tables = {name: dict(entries) for name, entries in registry._TABLES.items()}
    monkeypatch.setattr(registry, "_TABLES", tables)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_last_report", None)
    empty = tmp_path / "no_plugins"
    empty.mkdir()
    monkeypatch.setenv("AWNAS_PLUGIN_DIR", str(empty))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _make_base():
    class RegistryTestBase(Component):
        REGISTRY = TABLE

    return RegistryTestBase


def _make_class(base, name, module):
    """Create a subclass of ``base`` registered as ``name`` whose ``__module__`` is ``module``."""
    return type(f"Entry_{name}", (base,), {"NAME": name, "__module__": module})


# ---------------------------------------------------------------------------
# Registration and look-up


def test_register_by_name():
    base = _make_base()

    class First(base):
        NAME = "first"

    assert get_class(TABLE, "first") is First
    assert base.get_class_("first") is First
    assert base.all_classes_() == {"first": First}


def test_class_without_name_not_registered():
    base = _make_base()

    class Named(base):
        NAME = "named"

    class Unnamed(Named):
        pass

    assert list_names(TABLE) == ["named"]
    assert Unnamed.NAME == "named"


def test_register_same_class_twice():
    base = _make_base()
    cls = _make_class(base, "again", "dele.fake_module")
    assert register(TABLE, "again", cls) is cls
    assert get_class(TABLE, "again") is cls


def test_duplicate_in_package_raises():
    base = _make_base()
    first = _make_class(base, "clash", "dele.fake_one")

    with pytest.raises(RegistryError) as caught:
        _make_class(base, "clash", "dele.fake_two")

    message = str(caught.value)
    assert "'clash'" in message
    assert f"dele.fake_one.{first.__qualname__}" in message
    assert "dele.fake_two.Entry_clash" in message
    assert get_class(TABLE, "clash") is first


def test_outside_class_replaces_with_warning():
    base = _make_base()
    builtin = _make_class(base, "override", "dele.fake_builtin")

    with pytest.warns(UserWarning) as caught:
        replacement = _make_class(base, "override", "my_plugin")

    message = str(caught[0].message)
    assert f"dele.fake_builtin.{builtin.__qualname__}" in message
    assert "my_plugin.Entry_override" in message
    assert get_class(TABLE, "override") is replacement


def test_package_class_replaces_plugin():
    base = _make_base()
    _make_class(base, "late", "user_code")

    with pytest.warns(UserWarning, match="user_code.Entry_late"):
        package_class = _make_class(base, "late", "dele.fake_late")

    assert get_class(TABLE, "late") is package_class


def test_unknown_name_lists_registered():
    base = _make_base()
    for name in ("beta", "alpha"):
        _make_class(base, name, "dele.fake_list")

    with pytest.raises(RegistryError) as caught:
        get_class(TABLE, "gamma")

    message = str(caught.value)
    assert "'gamma'" in message
    assert "alpha, beta" in message


def test_unknown_table_raises():
    with pytest.raises(RegistryError, match="registered names: none"):
        get_class("no_such_table", "anything")


def test_shipped_plugin_name_hint():
    with pytest.raises(RegistryError, match="plugin/ folder") as caught:
        get_class("arch_embedder", "resnet_lstm")
    assert "ln -s" in str(caught.value)


def test_list_names_glob():
    base = _make_base()
    for name in ("nb201-flow-x", "nb201-lstm-x", "darts-flow-x"):
        _make_class(base, name, "dele.fake_glob")

    assert list_names(TABLE) == ["darts-flow-x", "nb201-flow-x", "nb201-lstm-x"]
    assert list_names(TABLE, "nb201-*") == ["nb201-flow-x", "nb201-lstm-x"]
    assert list_names(TABLE, "*-flow-*") == ["darts-flow-x", "nb201-flow-x"]
    assert list_names(TABLE, "resnet*") == []
    assert list_names("no_such_table") == []


def test_builtin_components_registered():
    assert {"nb201-flow", "nb201-lstm"} <= set(list_names("arch_embedder"))
    assert {"pointwise_comparator", "dynamic_ensemble_pointwise_comparator"} <= set(list_names("arch_network"))
    assert "nasbench-201" in list_names("search_space")


# ---------------------------------------------------------------------------
# Home and plugin folders


def test_awnas_home_default(monkeypatch, tmp_path):
    monkeypatch.delenv("AWNAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert registry.awnas_home() == tmp_path / "awnas"


def test_awnas_home_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AWNAS_HOME", str(tmp_path / "home"))
    assert registry.awnas_home() == tmp_path / "home"


def test_awnas_home_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWNAS_HOME", "relative/home")
    assert registry.awnas_home() == tmp_path / "relative" / "home"


def test_plugin_dir_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("AWNAS_PLUGIN_DIR", raising=False)
    monkeypatch.setenv("AWNAS_HOME", str(tmp_path / "home"))
    assert registry.plugin_dir() == tmp_path / "home" / "plugins"


def test_plugin_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("AWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWNAS_PLUGIN_DIR", str(tmp_path / "elsewhere"))
    assert registry.plugin_dir() == tmp_path / "elsewhere"


def test_folder_lookups_create_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("AWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AWNAS_PLUGIN_DIR", raising=False)

    registry.awnas_home()
    registry.plugin_dir()
    report = load_plugins()

    assert not (tmp_path / "home").exists()
    assert report.loaded == []
    assert report.failed == {}


def test_import_creates_no_folder(tmp_path):
    home = tmp_path / "home"
    environment = {key: value for key, value in os.environ.items() if key != "AWNAS_PLUGIN_DIR"}
    environment["AWNAS_HOME"] = str(home)
    code = "import dele, dele.registry, dele.spaces, dele.embedders, dele.predictors, dele.scripts, dele.cli"

    subprocess.run([sys.executable, "-c", code], env=environment, check=True, timeout=120)

    assert not home.exists()


# ---------------------------------------------------------------------------
# Plugin loading


def _plugin_source(name):
    """Return the source of a plugin file that registers one class as ``name``."""
    return textwrap.dedent(
        f"""
        from dele.registry import Component

        class Plugin(Component):
            REGISTRY = {TABLE!r}
            NAME = {name!r}
        """
    )


@pytest.fixture
def plugin_tree(tmp_path):
    """Build a plugin folder with nested, symlinked, skipped and broken files."""
    root = tmp_path / "plugins"
    (root / "nested" / "deeper").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "linked").mkdir(parents=True)

    (root / "a_plugin.py").write_text(_plugin_source("top_level"))
    (root / "nested" / "deeper" / "b_plugin.py").write_text(_plugin_source("nested"))
    (outside / "linked" / "c_plugin.py").write_text(_plugin_source("through_linked_folder"))
    (root / "link").symlink_to(outside / "linked", target_is_directory=True)
    (outside / "single.py").write_text(_plugin_source("linked_file"))
    (root / "single_link.py").symlink_to(outside / "single.py")

    (root / "test_skipped.py").write_text(_plugin_source("test_file") + "raise RuntimeError('imported a test file')\n")
    (root / "notes.txt").write_text(_plugin_source("text_file"))
    (root / "plugin.py.bak").write_text(_plugin_source("backup_file"))

    (root / "broken_syntax.py").write_text("def broken(:\n")
    (root / "broken_import.py").write_text(_plugin_source("before_failure") + "raise ImportError('missing dependency xyz')\n")
    (root / "z_after_broken.py").write_text(_plugin_source("after_failure"))
    return root


def test_plugins_nested_and_symlinked(plugin_tree):
    report = load_plugins(plugin_tree)

    names = list_names(TABLE)
    assert "top_level" in names
    assert "nested" in names
    assert "through_linked_folder" in names
    assert "linked_file" in names
    assert str(plugin_tree / "link" / "c_plugin.py") in report.loaded


def test_plugins_skip_other_files(plugin_tree):
    report = load_plugins(plugin_tree)

    names = list_names(TABLE)
    assert "test_file" not in names
    assert "text_file" not in names
    assert "backup_file" not in names
    loaded = {Path(path).name for path in report.loaded}
    assert loaded == {"a_plugin.py", "b_plugin.py", "c_plugin.py", "single_link.py", "z_after_broken.py"}


def test_broken_plugins_reported(plugin_tree):
    report = load_plugins(plugin_tree)

    assert set(report.failed) == {str(plugin_tree / "broken_syntax.py"), str(plugin_tree / "broken_import.py")}
    assert report.failed[str(plugin_tree / "broken_syntax.py")].startswith("SyntaxError")
    assert "missing dependency xyz" in report.failed[str(plugin_tree / "broken_import.py")]
    assert "after_failure" in list_names(TABLE)
    assert "before_failure" in list_names(TABLE)
    assert registry.last_plugin_report() is report


def test_broken_plugin_logged(plugin_tree, caplog):
    load_plugins(plugin_tree)

    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 2
    assert any("broken_syntax.py" in record.getMessage() for record in errors)
    assert any("missing dependency xyz" in record.getMessage() for record in errors)


def test_get_class_loads_plugins(monkeypatch, plugin_tree):
    monkeypatch.setenv("AWNAS_PLUGIN_DIR", str(plugin_tree))

    cls = get_class(TABLE, "nested")

    assert cls.NAME == "nested"
    assert registry._plugins_loaded
    assert registry.last_plugin_report().directory == plugin_tree


def test_plugin_embedder_usable(monkeypatch, tmp_path):
    root = tmp_path / "plugins"
    root.mkdir()
    (root / "embedder.py").write_text(
        textwrap.dedent(
            """
            import torch
            from dele.embedders import ArchEmbedder

            class CountEmbedder(ArchEmbedder):
                NAME = "plugin-count"

                def __init__(self, search_space=None, scale=1.0):
                    super().__init__(search_space)
                    self.out_dim = 1
                    self.scale = scale

                def forward(self, encoded):
                    return (encoded != 0).flatten(1).sum(-1, keepdim=True).float() * self.scale
            """
        )
    )
    monkeypatch.setenv("AWNAS_PLUGIN_DIR", str(root))

    embedder = build_embedder("plugin-count", None, {"scale": 2.0})

    encoded = torch.zeros(2, 4, 4, dtype=torch.long)
    encoded[1, 3, 0] = 3
    assert embedder(encoded).tolist() == [[0.0], [2.0]]


def test_plugin_overrides_builtin(monkeypatch, tmp_path):
    builtin = get_class("arch_embedder", "nb201-lstm")
    root = tmp_path / "plugins"
    root.mkdir()
    (root / "override.py").write_text(
        textwrap.dedent(
            """
            from dele.embedders.lstm import NasBench201LSTMEmbedder

            class MyLSTM(NasBench201LSTMEmbedder):
                NAME = "nb201-lstm"
            """
        )
    )

    with pytest.warns(UserWarning, match="NasBench201LSTMEmbedder"):
        report = load_plugins(root)

    assert report.failed == {}
    replacement = get_class("arch_embedder", "nb201-lstm")
    assert replacement is not builtin
    assert replacement.__qualname__ == "MyLSTM"
