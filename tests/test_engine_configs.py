"""The one "refuse to resume with another config" comparison (search/engine/configs.py),
used by the store (StoreConfigError) and GRAFS checkpoints (CheckpointError)."""

from keras_actfn.search.engine import config_differences, describe_differences
from keras_actfn.search.engine.configs import ABSENT, flatten_config


def test_nested_configs_differ_by_dotted_key():
    stored = {"algorithm": {"name": "pangaea", "population": 8, "sample": 16},
              "evaluator": {"epochs": 3, "data": [1, 2]}}
    requested = {"algorithm": {"name": "pangaea", "population": 12, "extra": True},
                 "evaluator": {"epochs": 3, "data": [1, 2]}}
    assert flatten_config(stored)["algorithm.sample"] == 16
    assert config_differences(stored, requested) == {
        "algorithm.extra": (ABSENT, True), "algorithm.population": (8, 12),
        "algorithm.sample": (16, ABSENT)}
    assert config_differences(stored, dict(stored)) == {}
    # list order counts; a key on one side only differs even where the other holds None
    assert config_differences({"a": [1, 2]}, {"a": [2, 1]}) == {"a": ([1, 2], [2, 1])}
    assert config_differences({"a": None, "b": 1}, {"b": 1}) == {"a": (None, ABSENT)}


def test_absent_none_reads_a_missing_key_as_none():
    """GRAFS: a setting missing from an older checkpoint matches the default None."""
    stored = {"epochs": 2, "seed": 0}
    assert config_differences(stored, {"epochs": 2, "seed": 0, "weight_optimizer": None},
                              absent=None) == {}
    assert config_differences(stored, {"epochs": 3, "seed": 0, "augment": "flip"},
                              absent=None) == {"augment": (None, "flip"), "epochs": (2, 3)}


def test_lines_name_each_key_with_both_values():
    differences = config_differences({"k": "a", "n": 1}, {"k": "b"})
    assert describe_differences(differences) == ['k: stored "a", requested "b"',
                                                 "n: stored 1, requested <absent>"]
    assert describe_differences(differences, "saved", "now", show=repr) == [
        "k: saved 'a', now 'b'", "n: saved 1, now '<absent>'"]
    many = config_differences({f"k{i:02d}": i for i in range(25)}, {"k00": 0, "z": 1})
    lines = describe_differences(many, limit=20)  # k01..k24 and z differ: 25 lines
    assert len(lines) == 21 and lines[19].startswith("k20:")
    assert lines[20] == "... and 5 more"
