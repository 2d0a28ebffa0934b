"""The neuron registry: one table of names, classes and the built-in tasks' arguments."""

from __future__ import annotations

import pytest

from snn_parallel import registry
from snn_parallel.neurons import BRF, LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay, SEAdLIF, SynapticLIF
from snn_parallel.surrogate import Sigmoid


def test_every_name_builds_its_class_with_the_task_arguments():
    classes = {
        "dsn": DynamicDecay,
        "prf": PRF,
        "prf_fixed": PRF,
        "lif": DecoupledLIF,
        "ltc": LTC,
        "brf": BRF,
        "adlif": SEAdLIF,
        "psplif": PSPLIF,
        "synaptic": SynapticLIF,
    }
    assert registry.names() == tuple(sorted(classes))
    for name, cls in classes.items():
        neuron = registry.build(name, 5)
        assert type(neuron) is cls and neuron.features == 5
    prf = registry.build("prf", 3)
    assert prf.learn_decay and prf.dt_range == (0.01, 1.0)
    fixed = registry.build("prf_fixed", 3)
    assert not fixed.learn_decay and isinstance(fixed.surrogate, Sigmoid)
    assert registry.build("ltc", 3).mode == "parallel" and registry.build("lif", 3).tau == 2.0
    assert registry.build("synaptic", 3).tau_syn == 2.0


def test_keywords_override_the_defaults_and_the_table_is_read_only():
    assert registry.build("ltc", 4, mode="paper", b0=0.5).mode == "paper"
    assert not registry.build("prf", 4, learn_decay=False).learn_decay
    assert registry.build("prf", 4).learn_decay  # the override changed nothing in the table
    with pytest.raises(TypeError):
        registry.NEURONS["new"] = registry.NEURONS["dsn"]
    with pytest.raises(TypeError):
        registry.NEURONS["prf"].defaults["learn_decay"] = False


def test_bad_names_and_features_are_refused():
    with pytest.raises(ValueError, match="unknown neuron 'izhikevich'; the known ones are adlif, brf, dsn"):
        registry.build("izhikevich", 4)
    with pytest.raises(ValueError, match="unknown neuron 3"):
        registry.build(3, 4)
    with pytest.raises(ValueError, match="features must be >= 1, got 0"):
        registry.build("dsn", 0)
    for bad in (True, 2.0, "4", None):
        with pytest.raises(TypeError, match="features must be an int"):
            registry.build("dsn", bad)
    with pytest.raises(TypeError):
        registry.build("dsn", 4, no_such_option=1)
