"""The plugin manager: built-ins through pluggy, in-process plugins, guarded entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import transferkit
from transferkit.cli import main
from transferkit.engine.run import run_recipe
from transferkit.plugins import get_plugins
from transferkit.recipe_loading import load_recipe
from transferkit.testing import plugin, tiny_cnn


def test_builtins_register_through_the_plugin_manager():
    info = get_plugins().info
    assert {"transferkit.builtin.backbones", "transferkit.builtin.datasets", "transferkit.builtin.augmentations"} <= set(info)
    assert "timm/efficientnet_lite0" in transferkit.list_backbones("timm/efficientnet_lite*")
    assert "torchvision/resnet50" in transferkit.list_backbones()
    assert {"imagefolder", "csv", "flowers102", "digits"} <= set(transferkit.list_datasets())


def test_in_process_plugin_appears_in_list_and_trains(tiny_recipe, tmp_path, capsys):
    plugins = get_plugins()
    hooks = plugin(register_backbones=lambda register: register("inproc/cnn", tiny_cnn, description="in-process CNN"))
    name = plugins.register(hooks, "inproc-plugin")
    try:
        assert main(["list", "backbones", "--filter", "inproc/*"]) == 0
        out = capsys.readouterr().out
        assert "inproc/cnn" in out and "inproc-plugin" in out
        tiny_recipe["backbone"]["name"] = "inproc/cnn"
        tiny_recipe["phases"]["finetune"]["epochs"] = 1
        result = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", log=lambda m: None)
        assert result.test_accuracy is not None and (result.run_dir / "model.safetensors").is_file()
    finally:
        plugins.unregister(name)
    assert "inproc/cnn" not in transferkit.list_backbones()


def _fake_distribution(root: Path, module_body: str) -> Path:
    """A minimal installed distribution with a ``transferkit`` entry point, on a private path."""
    dist = root / "brokenplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[transferkit]\nbrokenplug = brokenplug_mod\n")
    (root / "brokenplug_mod.py").write_text(textwrap.dedent(module_body))
    return root


def _run_cli(args, path: Path, **env):
    environ = {**os.environ, "PYTHONPATH": str(path), **env}
    return subprocess.run([sys.executable, "-m", "transferkit", *args], capture_output=True, text=True, env=environ, timeout=120)


def test_plugin_that_raises_on_import_is_reported_not_fatal(tmp_path):
    path = _fake_distribution(tmp_path, "raise ImportError('needs libfoo 2.0')\n")
    done = _run_cli(["plugins"], path)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("brokenplug"))
    assert "0.1" in line and "failed: ImportError: needs libfoo 2.0" in line
    assert "transferkit.builtin.backbones" in done.stdout  # the others still load


def test_strict_plugins_makes_a_broken_plugin_fatal(tmp_path):
    path = _fake_distribution(tmp_path, "raise ImportError('needs libfoo 2.0')\n")
    done = _run_cli(["list", "datasets"], path, TRANSFERKIT_STRICT_PLUGINS="1")
    assert done.returncode == 3
    assert "plugin 'brokenplug' (brokenplug) failed to load: ImportError: needs libfoo 2.0" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_disabled_plugin_is_not_imported_and_says_so(tmp_path):
    path = _fake_distribution(tmp_path, "raise ImportError('needs libfoo 2.0')\n")
    done = _run_cli(["plugins"], path, TRANSFERKIT_DISABLE_PLUGINS="brokenplug", TRANSFERKIT_STRICT_PLUGINS="1")
    assert done.returncode == 0, done.stderr  # not loaded, so strict mode has nothing to fail on
    line = next(x for x in done.stdout.splitlines() if x.startswith("brokenplug"))
    assert "disabled by TRANSFERKIT_DISABLE_PLUGINS" in line
    everything = _run_cli(["list", "backbones"], path, TRANSFERKIT_DISABLE_PLUGINS="*")
    names = [x.split()[0] for x in everything.stdout.splitlines()[1:]]
    assert everything.returncode == 0 and "resnet18" not in names and "timm/resnet18" in names


def test_duplicate_registration_across_plugins_names_both(tmp_path):
    body = """
        from transferkit import hookimpl

        @hookimpl
        def register_datasets(register):
            register("digits", lambda root, **kw: None)
    """
    done = _run_cli(["list", "datasets"], _fake_distribution(tmp_path, body))
    assert done.returncode == 3
    assert "'digits' is registered twice: by plugin 'transferkit.builtin.datasets' and by plugin 'brokenplug'" in done.stderr


def test_plugins_command_lists_hooks_and_versions(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "register_backbones" in out and transferkit.__version__ in out


@pytest.mark.parametrize("kind", ["backbones", "augmentations", "averagers", "datasets"])
def test_list_every_kind(kind, capsys):
    assert main(["list", kind]) == 0
    assert capsys.readouterr().out


def _disabled_line(stderr: str, plugin: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr  # one line, no traceback
    assert plugin in lines[0] and f"TRANSFERKIT_DISABLE_PLUGINS={plugin}" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("body, said", [
    ("import sys\nsys.exit(0)\n", "SystemExit(0) (it called sys.exit)"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt (raised by the plugin)"),
])
def test_a_plugin_that_exits_at_import_cannot_end_every_command(tmp_path, body, said):
    path = _fake_distribution(tmp_path, body)
    done = _run_cli(["list", "datasets"], path)
    assert done.returncode == 0 and "imagefolder" in done.stdout  # the command ran, with the other plugins
    assert "failed to load: " + said in _disabled_line(done.stderr, "brokenplug")
    table = _run_cli(["plugins"], path)
    assert table.returncode == 0 and "transferkit.builtin.backbones" in table.stdout
    assert "failed: " + said in next(x for x in table.stdout.splitlines() if x.startswith("brokenplug"))


HOOK_RAISES = """
    import sys
    from transferkit import hookimpl

    @hookimpl
    def register_datasets(register):
        register("half", lambda root, **kw: None)
        {raise_it}

    @hookimpl
    def register_commands(register):
        register("hello", lambda parser: None, run=lambda args: 0, description="says hello")
"""


@pytest.mark.parametrize("raise_it, said", [
    ("raise ValueError('no config file')", "its register_datasets hook raised ValueError: no config file"),
    ("sys.exit(3)", "its register_datasets hook raised SystemExit(3) (it called sys.exit)"),
])
def test_a_plugin_whose_hook_raises_is_disabled_and_the_rest_work(tmp_path, raise_it, said):
    path = _fake_distribution(tmp_path, HOOK_RAISES.format(raise_it=raise_it))
    done = _run_cli(["list", "datasets"], path)
    assert done.returncode == 0, done.stderr
    assert "imagefolder" in done.stdout and "half" not in done.stdout  # nothing of the disabled plugin is half-registered
    assert said in _disabled_line(done.stderr, "brokenplug")
    table = _run_cli(["plugins"], path)
    assert table.returncode == 0
    assert f"disabled: {said}" in next(x for x in table.stdout.splitlines() if x.startswith("brokenplug"))
    strict = _run_cli(["list", "datasets"], path, TRANSFERKIT_STRICT_PLUGINS="1")
    assert strict.returncode == 3 and "plugin 'brokenplug' failed in register_datasets" in strict.stderr


def test_a_hook_with_a_wrong_signature_is_named_and_plugins_still_works(tmp_path):
    body = """
        from transferkit import hookimpl

        @hookimpl
        def register_backbones(register, config):
            pass
    """
    path = _fake_distribution(tmp_path, body)
    table = _run_cli(["plugins"], path)
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if x.startswith("brokenplug"))
    assert "failed: has a hook that does not match transferkit's" in line and "{'config'}" in line
    assert "has a hook that does not match" in _disabled_line(table.stderr, "brokenplug")
    listed = _run_cli(["list", "backbones", "--filter", "timm/resnet18"], path)
    assert listed.returncode == 0 and "timm/resnet18" in listed.stdout


def test_a_plugin_command_that_fails_to_configure_leaves_the_command_line_working(tmp_path):
    body = """
        from transferkit import hookimpl

        def configure(parser):
            raise RuntimeError("argparse clash")

        @hookimpl
        def register_commands(register):
            register("clash", configure, run=lambda args: 0)
    """
    path = _fake_distribution(tmp_path, body)
    done = _run_cli(["plugins"], path)
    assert done.returncode == 0 and "transferkit.builtin.datasets" in done.stdout
    listed = _run_cli(["--help"], path)  # the full command line: every plugin command configured
    assert listed.returncode == 0 and "finetune" in listed.stdout and "clash" not in listed.stdout
    assert "its command 'clash' failed to configure: RuntimeError: argparse clash" in _disabled_line(listed.stderr, "brokenplug")


@pytest.mark.parametrize("body, said", [
    ("raise GeneratorExit\n", "failed to load: GeneratorExit; it is left out"),
    ("class Odd(BaseException):\n    pass\nraise Odd('odd')\n", "failed to load: Odd: odd"),
])
def test_any_base_exception_at_import_leaves_the_plugin_out_in_one_line(tmp_path, body, said):
    done = _run_cli(["list", "datasets"], _fake_distribution(tmp_path, body))
    assert done.returncode == 0 and "imagefolder" in done.stdout, done.stderr
    assert said in _disabled_line(done.stderr, "brokenplug")


def test_a_hook_raising_plugin_error_disables_its_plugin_instead_of_ending_the_command(tmp_path):
    body = HOOK_RAISES.format(raise_it="from transferkit import PluginError; raise PluginError('my own config is missing')")
    done = _run_cli(["list", "datasets"], _fake_distribution(tmp_path, body))
    assert done.returncode == 0 and "imagefolder" in done.stdout and "half" not in done.stdout, done.stderr
    assert "its register_datasets hook raised PluginError: my own config is missing" in _disabled_line(done.stderr, "brokenplug")


def test_a_plugin_that_sleeps_at_import_is_left_out_after_the_time_limit(tmp_path):
    path = _fake_distribution(tmp_path, "import time\ntime.sleep(60)\n")
    done = _run_cli(["list", "datasets"], path, TRANSFERKIT_PLUGIN_TIMEOUT="1")
    assert done.returncode == 0 and "imagefolder" in done.stdout, done.stderr
    assert "its import took more than 1 s (the limit, TRANSFERKIT_PLUGIN_TIMEOUT)" in _disabled_line(done.stderr, "brokenplug")


def test_a_plugin_that_blocks_the_alarm_ends_the_command_in_one_line_instead_of_hanging(tmp_path):
    body = "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(60)\n"
    done = _run_cli(["plugins"], _fake_distribution(tmp_path, body), TRANSFERKIT_PLUGIN_TIMEOUT="1")
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "transferkit: error: plugin 'brokenplug': its import has not finished after 6 s; fix or uninstall it, skip it with"
        " TRANSFERKIT_DISABLE_PLUGINS=brokenplug, or raise TRANSFERKIT_PLUGIN_TIMEOUT"]


def test_what_a_plugin_prints_at_import_and_in_its_hooks_goes_to_stderr(tmp_path):
    body = """
        print("hello from import")
        from transferkit import hookimpl

        @hookimpl
        def register_datasets(register):
            print("hello from the hook")
    """
    done = _run_cli(["list", "datasets"], _fake_distribution(tmp_path, body))
    assert done.returncode == 0 and "hello" not in done.stdout and "imagefolder" in done.stdout
    assert "hello from import" in done.stderr and "hello from the hook" in done.stderr


def test_what_a_plugins_factory_prints_when_it_builds_a_backbone_goes_to_stderr(capsys):
    def noisy(pretrained=False):
        print("building the noisy backbone")
        return tiny_cnn()

    hooks = plugin(register_backbones=lambda register: register("noisy/cnn", noisy))
    name = get_plugins().register(hooks, "noisy-plugin")
    try:
        transferkit.create_backbone("noisy/cnn")
    finally:
        get_plugins().unregister(name)
    captured = capsys.readouterr()
    assert "building the noisy backbone" in captured.err and "noisy" not in captured.out


MISSPELLED_HOOK = """
    from transferkit import hookimpl

    @hookimpl
    def register_backbone(register):  # singular: not a transferkit hook
        register("brokenplug/net", lambda pretrained=False: None)
"""


def test_a_misspelled_hook_is_refused_in_one_line_naming_the_plugin_and_the_closest_hook(tmp_path):
    path = _fake_distribution(tmp_path, MISSPELLED_HOOK)
    done = _run_cli(["list", "datasets"], path)
    assert done.returncode == 0 and "imagefolder" in done.stdout, done.stderr
    assert _disabled_line(done.stderr, "brokenplug") == (
        "transferkit: warning: plugin 'brokenplug' (brokenplug) has a hook transferkit does not know: register_backbone"
        " (did you mean register_backbones?); it is left out and the others still work; fix or uninstall it,"
        " or skip it with TRANSFERKIT_DISABLE_PLUGINS=brokenplug")
    table = _run_cli(["plugins"], path)
    line = next(x for x in table.stdout.splitlines() if x.startswith("brokenplug"))
    assert "failed: has a hook transferkit does not know: register_backbone (did you mean register_backbones?)" in line


def test_an_in_process_plugin_with_an_unknown_hook_is_refused():
    with pytest.raises(transferkit.PluginError) as info:
        get_plugins().register(plugin(register_backbone=lambda register: None), "typo-plugin")
    assert str(info.value) == ("plugin 'typo-plugin' (in-process) has a hook transferkit does not know: register_backbone"
                               " (did you mean register_backbones?)")
    assert "typo-plugin" not in get_plugins().info


def test_a_hook_function_without_hookimpl_is_refused_instead_of_never_called():
    module = types.ModuleType("forgot_marker")
    module.register_backbones = lambda register: register("forgot/net", tiny_cnn)  # no @transferkit.hookimpl
    with pytest.raises(transferkit.PluginError) as info:
        get_plugins().register(module, "forgot-plugin")
    assert str(info.value) == ("plugin 'forgot-plugin' (in-process) has a function transferkit never calls: register_backbones"
                               " without @transferkit.hookimpl (decorate it)")
    assert "forgot-plugin" not in get_plugins().info


def test_a_plugin_registering_what_breaks_the_contract_is_left_out_naming_it():
    hooks = plugin(register_backbones=lambda register: register("contract/net", lambda: tiny_cnn()))  # no `pretrained`
    name = get_plugins().register(hooks, "contract-plugin")
    try:
        with pytest.warns(transferkit.errors.PluginWarning) as said:
            assert "contract/net" not in transferkit.list_backbones("contract/*")
        assert len(said) == 1 and str(said[0].message).startswith(
            "plugin 'contract-plugin' (in-process) was disabled: its register_backbones hook registered backbone 'contract/net'"
            " with a factory that cannot be called as factory(pretrained: bool = False, **params)")
    finally:
        if get_plugins().pm.get_plugin(name) is not None:
            get_plugins().unregister(name)
        get_plugins().info.pop(name, None)
