"""The plugin manager: entry points one by one, failures contained and reported."""

from __future__ import annotations

import types
from dataclasses import dataclass

import pytest

from lossatlas.engine import PluginError, Probe, hookimpl, make_registry
from lossatlas.engine import registry as registry_mod


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"


class FakeEP:
    def __init__(self, name: str, loader, dist: str = "thirdparty") -> None:
        self.name = name
        self._loader = loader
        self.dist = FakeDist(dist)

    def load(self):
        return self._loader()


class NamedProbe(Probe):
    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]


def plugin_module(*probe_names: str) -> types.ModuleType:
    mod = types.ModuleType("fake_plugin")

    @hookimpl
    def lossatlas_register_probes():
        return [NamedProbe(n) for n in probe_names]

    mod.lossatlas_register_probes = lossatlas_register_probes
    return mod


def boom():
    raise ImportError("No module named 'torchvision'")


@pytest.fixture
def fake_eps(monkeypatch):
    def install(*eps: FakeEP) -> None:
        real = registry_mod._entry_points()
        monkeypatch.setattr(registry_mod, "_entry_points", lambda: [*real, *eps])

    return install


#: The engine's own entry points (pyproject.toml); third-party plugins installed in the
#: same environment (``pip install ./examples/plugin-package``) come on top of them.
BUILTINS = {"models", "datasets", "losses", "subspaces", "probes", "executors"}


def builtin_names(reg, kind: str) -> list[str]:
    """The components of ``kind`` that the lossatlas distribution itself registers."""
    return [n for n in reg.names(kind) if reg.provider(kind, n).distribution == "lossatlas"]


def test_builtins_register_through_entry_points() -> None:
    reg = make_registry()
    ours = {r.name: r for r in reg.records if r.distribution == "lossatlas"}
    assert set(ours) == BUILTINS  # whatever else is installed
    assert all(r.status == "ok" for r in ours.values())
    assert "mlp" in builtin_names(reg, "model") and "digits" in builtin_names(reg, "dataset")
    assert "random-line" in builtin_names(reg, "probe")
    assert "l1" in builtin_names(reg, "loss")
    assert "local" in builtin_names(reg, "executor")


def test_builtins_are_found_beside_a_third_party_plugin(fake_eps) -> None:
    fake_eps(FakeEP("extra", lambda: plugin_module("extra-probe"), dist="lossatlas-extra"))
    reg = make_registry()
    assert {r.name for r in reg.records if r.distribution == "lossatlas"} == BUILTINS
    assert "extra-probe" in reg.names("probe") and "extra-probe" not in builtin_names(reg, "probe")
    assert "random-line" in builtin_names(reg, "probe")
    assert "l1" in builtin_names(reg, "loss")


def test_a_plugin_that_fails_to_import_is_recorded_and_others_load(fake_eps) -> None:
    fake_eps(FakeEP("visionstuff", boom), FakeEP("good", lambda: plugin_module("good-probe")))
    reg = make_registry()
    bad = next(r for r in reg.records if r.name == "visionstuff")
    assert bad.status == "failed" and "torchvision" in bad.error
    assert bad.distribution == "thirdparty"
    assert "good-probe" in reg.names("probe") and "mlp" in reg.names("model")
    with pytest.raises(PluginError, match="plugin 'visionstuff'.*failed to load.*torchvision"):
        reg.get("probe", "visionstuff")
    with pytest.raises(PluginError, match="unknown probe 'nope'.*failed to load"):
        reg.get("probe", "nope")


def test_a_name_clash_blames_the_newcomer(fake_eps) -> None:
    fake_eps(FakeEP("clasher", lambda: plugin_module("random-line", "fresh")))
    reg = make_registry()
    rec = next(r for r in reg.records if r.name == "clasher")
    assert rec.status == "failed"
    assert "registers probe 'random-line', which plugin 'probes'" in rec.error
    # the clashing plugin is out entirely; the built-in keeps its name
    assert "fresh" not in reg.names("probe")
    assert reg.provider("probe", "random-line").name == "probes"
    with pytest.raises(PluginError, match="clasher"):
        reg.get("probe", "fresh")


def test_a_plugin_whose_hook_raises_or_returns_junk(fake_eps) -> None:
    raising = types.ModuleType("raising")

    @hookimpl
    def lossatlas_register_models():
        raise RuntimeError("cannot find CUDA kernels")

    raising.lossatlas_register_models = lossatlas_register_models
    junk = types.ModuleType("junk")

    @hookimpl
    def lossatlas_register_probes():
        return ["not a probe"]

    junk.lossatlas_register_probes = lossatlas_register_probes
    fake_eps(FakeEP("raising", lambda: raising), FakeEP("junk", lambda: junk))
    reg = make_registry()
    recs = {r.name: r for r in reg.records}
    assert recs["raising"].status == "failed" and "cannot find CUDA" in recs["raising"].error
    assert recs["junk"].status == "failed" and "not a named Probe" in recs["junk"].error
    assert "mlp" in reg.names("model")


def test_plugins_can_be_disabled(monkeypatch) -> None:
    monkeypatch.setenv("LOSSATLAS_DISABLE_PLUGINS", "probes, executors")
    reg = make_registry()
    status = {r.name: r.status for r in reg.records}
    assert status["probes"] == "disabled" and status["executors"] == "disabled"
    assert builtin_names(reg, "probe") == [] and builtin_names(reg, "executor") == []
    assert "random-line" not in reg.names("probe")  # nor from another distribution
    assert "mlp" in builtin_names(reg, "model")  # the others still load
    assert reg.warnings == []
    with pytest.raises(PluginError, match="unknown probe 'random-line'") as err:
        reg.get("probe", "random-line")
    assert "disabled by LOSSATLAS_DISABLE_PLUGINS (they may provide it): " in str(err.value)
    assert "executors" in str(err.value) and "probes" in str(err.value)


def test_describe_says_why_a_name_is_missing_as_get_does(fake_eps, monkeypatch) -> None:
    """A name a failed or disabled plugin may provide gets get's message (not the
    'no component is named' one), whatever kind asked."""
    monkeypatch.setenv("LOSSATLAS_DISABLE_PLUGINS", "executors")
    fake_eps(FakeEP("visionstuff", boom))
    reg = make_registry()
    with pytest.raises(PluginError) as got:
        reg.get("model", "visionstuff")
    with pytest.raises(PluginError) as described:
        reg.describe("visionstuff")
    assert str(described.value) == str(got.value)
    assert "failed to load: ImportError: No module named 'torchvision'" in str(got.value)
    with pytest.raises(PluginError, match="plugin 'executors' is disabled by LOSSATLAS_DISABLE"):
        reg.describe("executors")
    with pytest.raises(PluginError, match="no model, dataset, .* is named 'mlpp' .*'mlp'"):
        reg.describe("mlpp")


def test_unknown_names_suggest_the_closest() -> None:
    reg = make_registry()
    with pytest.raises(PluginError, match="did you mean 'random-line'"):
        reg.get("probe", "random_line")


def test_in_process_plugins() -> None:
    reg = make_registry(plugins=[("mine", plugin_module("mine-probe"))])
    assert reg.provider("probe", "mine-probe").distribution == "in-process"
    assert reg.provider("probe", "mine-probe").describe() == (
        "plugin 'mine' (distribution in-process)"
    )


def test_an_unknown_name_to_disable_is_a_warning(monkeypatch) -> None:
    monkeypatch.setenv("LOSSATLAS_DISABLE_PLUGINS", "probe, bogus")
    reg = make_registry()
    assert "random-line" in reg.names("probe")  # nothing is disabled
    assert len(reg.warnings) == 2
    bogus, probe = reg.warnings
    assert bogus.startswith("LOSSATLAS_DISABLE_PLUGINS names no plugin 'bogus'; the plugins are: ")
    assert BUILTINS <= set(bogus.split("the plugins are: ")[1].split(", "))
    assert "names no plugin 'probe' (did you mean 'probes'?)" in probe


def bad_signature() -> types.ModuleType:
    """A plugin whose hookimpl takes an argument the hookspec does not have."""
    mod = types.ModuleType("bad_signature")

    @hookimpl
    def lossatlas_register_probes(registry):
        return []

    mod.lossatlas_register_probes = lossatlas_register_probes
    return mod


def test_a_hookimpl_pluggy_refuses_is_one_line(fake_eps) -> None:
    fake_eps(FakeEP("badsig", bad_signature))
    reg = make_registry()
    rec = next(r for r in reg.records if r.name == "badsig")
    assert rec.status == "failed" and "\n" not in rec.error
    assert rec.error.startswith("PluginValidationError: ")
    assert "lossatlas_register_probes(registry)" in rec.error
    assert "{'registry'} are declared in the hookimpl but can not be found" in rec.error


def test_unknown_names_list_failed_plugins_without_their_errors(fake_eps) -> None:
    fake_eps(FakeEP("visionstuff", boom), FakeEP("badsig", bad_signature))
    reg = make_registry()
    with pytest.raises(PluginError) as err:
        reg.get("model", "mlpp")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("unknown model 'mlpp' (did you mean 'mlp'?)")
    assert (
        "plugins that failed to load (they may provide it): 'visionstuff' (thirdparty 1.0), "
        "'badsig' (thirdparty 1.0) ('lossatlas plugins' shows why)"
    ) in msg
    assert "torchvision" not in msg and "hookimpl" not in msg
    # the plugin known to provide the name still gets its full (one-line) error
    with pytest.raises(PluginError, match="plugin 'badsig'.*failed to load: PluginValidation"):
        reg.get("probe", "badsig")


# ------------------------------------------------- in-process plugins and pluggy


def test_an_in_process_plugin_that_is_also_installed_replaces_the_installed_entry(
    fake_eps,
) -> None:
    """The documented test recipe with the package installed: the same module comes
    from an entry point and from plugins=[...]; the in-process one is used, not failed."""
    mod = plugin_module("twice-probe")
    fake_eps(FakeEP("spirals", lambda: mod, dist="lossatlas-spirals"))
    reg = make_registry(plugins=[("mine", mod)])
    recs = {r.name: r for r in reg.records}
    assert recs["mine"].status == "ok" and recs["mine"].error == ""
    assert recs["spirals"].status == "replaced"
    assert "in-process plugin 'mine'" in recs["spirals"].note
    assert reg.provider("probe", "twice-probe").name == "mine"


def test_an_in_process_component_wins_over_an_installed_one(fake_eps) -> None:
    fake_eps(FakeEP("old", lambda: plugin_module("shared", "only-old"), dist="old-dist"))
    reg = make_registry(plugins=[("new", plugin_module("shared"))])
    assert reg.provider("probe", "shared").name == "new"
    old = next(r for r in reg.records if r.name == "old")
    assert old.status == "ok" and "only-old" in reg.names("probe")
    assert old.note == "left to in-process plugins: probe 'shared'"


def test_hooks_go_through_pluggy_so_unmarked_functions_are_not_called() -> None:
    mod = types.ModuleType("unmarked")
    calls = []

    def lossatlas_register_probes():  # no @hookimpl
        calls.append(1)
        return [NamedProbe("never")]

    mod.lossatlas_register_probes = lossatlas_register_probes  # type: ignore[attr-defined]
    reg = make_registry(plugins=[("unmarked", mod)])
    rec = next(r for r in reg.records if r.name == "unmarked")
    assert calls == [] and "never" not in reg.names("probe")
    assert "lossatlas_register_probes not called: mark it with @lossatlas.engine.hookimpl" in (
        rec.note
    )


def test_plugin_objects_with_marked_methods_and_hook_options() -> None:
    """Objects (not modules) whose methods are marked hooks, one with pluggy's
    ``tryfirst`` option, register like modules do."""

    class Two:
        @hookimpl(tryfirst=True)
        def lossatlas_register_probes(self):
            return [NamedProbe("first")]

    class Other:
        @hookimpl
        def lossatlas_register_probes(self):
            return [NamedProbe("second")]

    reg = make_registry(entry_points=False, plugins=[("two", Two()), ("other", Other())])
    assert reg.names("probe") == ["first", "second"]


def test_only_distributions_keeps_the_builtins() -> None:
    reg = make_registry(only_distributions={"lossatlas"})
    assert {r.distribution for r in reg.records} == {"lossatlas"}
    assert "random-line" in reg.names("probe")
