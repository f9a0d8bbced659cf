"""benchmarks/device_check.py (issue 20) run in-process with ``--cpu --tiny``, so the script
a GPU session runs in one go never rots: the JSON's fields, the CPU-vs-"device" FIM
comparison (here both on the CPU: equal to round-off), the fused-vs-unfused microbenchmark
variants computing the same numbers, the table. The fast test runs sections (a), (b) and
(d); the training sections (c) and (e) -- Keras ``fit`` and the GRAFS epoch loop, seconds of
tracing each -- run in the slow test."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, tmp_path, sections):
    path = tmp_path / "check.json"
    lines = []
    report = module.run(["--cpu", "--tiny", "--sections", sections, "--json", str(path)],
                        log=lines.append)
    with open(path) as f:
        saved = json.load(f)
    return report, saved, "\n".join(lines)


def test_device_check_fim_activation_autoinit(device_check, tmp_path):
    report, saved, printed = _run(device_check, tmp_path, "fim,activation,autoinit")
    assert saved["errors"] == {} and report["errors"] == {}
    meta = saved["meta"]
    assert meta["device"] == "CPU:0" and meta["mode"] == "tiny" and meta["cpu_only"] is True
    assert meta["factor_rtol"] == device_check.FACTOR_RTOL
    assert set(saved["sections"]) == {"fim", "activation", "autoinit"}
    assert saved["table"] in printed and printed.count("\n") > 10

    # (a) every model, every layer: the CPU path and the default device agree
    fim = saved["sections"]["fim"]
    assert [m["model"] for m in fim] == [name for name, _ in device_check.SIZES["tiny"]
                                         ["fim_models"]]
    for model in fim:
        assert model["agree"] is True and model["valid"] == [True, True]
        assert model["layers"] and model["cpu_s"] > 0 and model["device_s"] > 0
        for layer in model["layers"]:
            assert layer["agree"] and layer["same_name"]
            for key in ("omega", "gamma", "eig_omega", "eig_gamma"):
                assert 0.0 <= layer[key] <= 1e-6      # both runs on the CPU: round-off
    fim_rows = [r for r in saved["rows"] if r["section"] == "fim"]
    assert len(fim_rows) == 2 * len(fim)
    assert {r["result"] for r in fim_rows if r["item"].endswith("device")} == {"AGREE"}

    # (b) fused variants computed what the unfused ones did, and really ran fused
    micro = saved["sections"]["activation"]
    assert micro["shape"] == [1, 4, 4, 8]
    variants = {v["variant"]: v for v in micro["variants"]}
    assert list(variants) == [v[0] for v in device_check.MICRO_VARIANTS]
    for v in variants.values():
        assert v["ms"] > 0 and len(v["times_s"]) == micro["rounds"]
        if v["fused"]:
            assert v["fused_in_use"] is True
            assert v["max_rel_diff_vs_unfused"] <= 1e-5
            assert variants[v["variant"].replace(" fused", " unfused")]["fused_in_use"] is False
        if v["baseline"]:
            assert v["ratio"] > 0 and v["goal"] in (1.05, 1.3, 2.0, None)
        # a goal row's floor is the lower of its floor function's two ratios
        for stem, floor in device_check.FLOORS.items():
            if v["variant"].startswith(stem + " "):
                assert v["floor_ratio"] == min(variants[floor + " fused"]["ratio"],
                                               variants[floor + " unfused"]["ratio"])
    results = {r["item"]: r["result"] for r in saved["rows"] if r["section"] == "activation"}
    assert results["relu (Keras)"] == "baseline"
    assert all(results[k] == "floor" for k in results if k.startswith("floor "))
    assert all(results[k] in ("PASS", "MISS") for k in results
               if "Keras" not in k and not k.startswith("floor "))

    # (d) AutoInit on the tiny ResNet: every graph layer visited, finite output
    autoinit = saved["sections"]["autoinit"]
    assert autoinit["model"] == "resnet_v1_20" and autoinit["finite_output"] is True
    assert autoinit["layers"] > 20 and autoinit["autoinit_s"] > 0


def test_fim_comparison_detects_a_difference(device_check):
    """The comparison is not vacuous: a perturbed factor or eigenvalue is reported."""
    from types import SimpleNamespace

    def result(scale):
        omega = np.array([[2.0, 0.5], [0.5, 1.0]])
        layer = SimpleNamespace(name="conv", kind="conv", omega=omega * scale,
                                gamma=np.eye(3), log_eig_omega=np.log(np.linalg.eigvalsh(
                                    omega * scale)), log_eig_gamma=np.zeros(3),
                                histogram=np.array([1, 2]))
        return SimpleNamespace(layers=[layer], valid=True)

    agree, layers = device_check.compare_fisher(result(1.0), result(1.0))
    assert agree and layers[0]["omega"] == 0.0
    agree, layers = device_check.compare_fisher(result(1.0), result(1.0 + 1e-3))
    assert not agree
    assert math.isclose(layers[0]["omega"], 1e-3, rel_tol=1e-6)
    assert math.isclose(layers[0]["eig_omega"], 1e-3, rel_tol=1e-6)


@pytest.mark.slow
def test_device_check_training_sections(device_check, tmp_path):
    report, saved, _ = _run(device_check, tmp_path, "evaluate,grafs")
    assert saved["errors"] == {}
    ev = saved["sections"]["evaluate"]
    assert ev["images"] == 64 and ev["fit_s"] > 0
    assert math.isclose(ev["images_per_s"], ev["images"] / ev["fit_s"], rel_tol=1e-9)
    assert ev["status"] in ("ok", "failed")
    grafs = saved["sections"]["grafs"]
    assert grafs["epochs"] == 2 and grafs["wall_s"] > 0 and isinstance(grafs["function"], str)
