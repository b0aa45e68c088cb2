"""Generic properties of every registered component, expanded over spec × dtype × size (OpInfo style).

The tests themselves live in reprobench.testing.generic_tests, so anyone's components get them through the
pytest plugin (`pytest --reprobench-components 'acme.*'`); importing them here, with the hook that
parametrizes them, runs them over every registered component under this module's name. Test ids read
`matches_reference[attention.strided-cpu-float32-n=7]`; a failure prints the sample's shapes, the seed
and the command that reruns just that case. Expected failures are declared next to the component
(ComponentSpec.expected_failures) with a reason, and become strict xfails.
"""
from __future__ import annotations

from reprobench.registry import GENERIC_TESTS, get, list_components
from reprobench.testing.generic_tests import (  # noqa: F401 - the tests and their parametrizing hook
    applies, pytest_generate_tests, test_bad_input_raises, test_gradients_match_reference, test_inputs_unchanged,
    test_matches_reference, test_matches_reference_random_cases, test_no_host_syncs, test_outputs_finite,
    test_probabilities_normalised, test_state_dict_shared)


def test_generic_test_names_are_known():
    assert set(GENERIC_TESTS) >= {name.removeprefix("test_") for name in globals() if name.startswith("test_")
                                  and name.removeprefix("test_") in GENERIC_TESTS}


def test_registry_is_not_empty():
    assert list_components("attention.*"), "no attention components registered: the suite would test nothing"


def test_attention_components_expose_probabilities():
    """The probability property must not silently stop applying to the attention layers it exists for."""
    for name in ("attention.dense", "attention.strided"):
        assert applies(get(name), "probabilities_normalised"), name


def test_every_component_declares_bad_inputs():
    missing = [spec.name for spec in list_components() if spec.error_inputs is None]
    assert not missing, f"components without error_inputs (bad input must be tested): {missing}"
