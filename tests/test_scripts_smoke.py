"""The experiment scripts of chapters 3-4 (scripts/*.py): every one resolves its task,
model, recipes and search settings (on tfds mock data), and every --smoke run goes through
search, journal and final comparison without a single crashed evaluation (~15-50 s each on
2 cores: a real WRN/ResNet/All-CNN-C built, AutoInit-ed and trained for one epoch)."""

import os
import runpy
import sys

import pytest

from keras_actfn.search.engine.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["cafe_wrn28_10_cifar10", "pangaea_wrn10_4_cifar100",
           "pangaea_resnet_v1_56_cifar100", "pangaea_resnet_v2_56_cifar100",
           "pangaea_all_cnn_c_cifar10"]


def _run(name, *argv):
    path = os.path.join(ROOT, "scripts", f"{name}.py")
    old = sys.argv
    sys.argv = [path, *argv]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = old
    return exit_info.value.code


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_configuration_resolves(name, tmp_path, capsys):
    assert _run(name, "--smoke", "--dry-run", "--store", str(tmp_path / "s.db")) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and ("cafe" in out or "pangaea" in out)


def _smoke(name, tmp_path):
    store = str(tmp_path / f"{name}.db")
    assert _run(name, "--smoke", "--store", store) == 0
    with Store(store) as journal:
        journal.select_run("search")
        search = journal.results()
        journal.select_run("final")
        final = journal.results()
    assert len(search) == 2 and len(final) >= 1
    # mock images carry random labels, so candidates may fail at chance -- but nothing
    # may crash: every failure has a real reason, not an "error"
    for ev in search + final:
        assert ev.record.reason != "error", (ev.text, ev.record.message)
        assert ev.record.epochs_run >= 1 or ev.record.reason == "overflow"


#: the four heaviest smoke runs (20-45 s each: WRN-28-10, two ResNet-56, All-CNN-C) are
#: kept out of the default run: every script's configuration resolves above (--dry-run),
#: the same experiment path (search, journal, final comparison) runs below on WRN-10-4, and
#: tests/test_models_zoo.py runs every zoo model with a CustomActivation at every site
#: (tests/test_autoinit_resnet.py AutoInit on the ResNets)
_HEAVY = {"cafe_wrn28_10_cifar10", "pangaea_resnet_v1_56_cifar100",
          "pangaea_resnet_v2_56_cifar100", "pangaea_all_cnn_c_cifar10"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY
                                  else n for n in SCRIPTS])
def test_smoke_runs(name, tmp_path):
    _smoke(name, tmp_path)
