"""The registry: declarations are validated, lookups work, every family fits."""
import pytest
import torch

from reprobench.registry import (ComponentSpec, ExpectedFailure, SampleInput, get,
                           list_components, make_generator, register)


def _spec(**overrides):
    fields = dict(name="attention.dummy_for_test", claims=("EFF-01",), build=lambda *a: None,
                  sample_inputs=lambda *a: [])
    fields.update(overrides)
    return ComponentSpec(**fields)


def test_dense_and_strided_are_registered():
    names = [spec.name for spec in list_components("attention.*")]
    assert "attention.dense" in names and "attention.strided" in names


def test_list_filters_with_shell_patterns():
    assert all(spec.name.startswith("attention.") for spec in list_components("attention.*"))
    assert list_components("no_such_family.*") == []


def test_get_unknown_component_names_the_cli():
    with pytest.raises(KeyError, match="reprobench list"):
        get("attention.no_such_thing")


@pytest.mark.parametrize("overrides,match", [
    (dict(name="dense"), "must be '<family>.<component>'"),
    (dict(name="widgets.dense-v2"), "identifiers"),
    (dict(claims=("eff7",)), "not in CLAIMS.md"),
    (dict(tolerances={}), "tolerances is empty"),
    (dict(test_sizes=()), "must not be empty"),
])
def test_spec_rejects_bad_declarations(overrides, match):
    with pytest.raises(ValueError, match=match):
        _spec(**overrides)


def test_expected_failure_must_name_a_known_test_and_a_reason():
    with pytest.raises(ValueError, match="not a generic test"):
        ExpectedFailure("matches_refernce", "typo")
    with pytest.raises(ValueError, match="reason is empty"):
        ExpectedFailure("matches_reference", "  ")


def test_register_twice_is_an_error(monkeypatch):
    # A private copy of the registry: the test must not leave a component behind for other suites.
    import reprobench.registry
    monkeypatch.setattr(reprobench.registry, "_REGISTRY", dict(reprobench.registry._REGISTRY))
    spec = _spec(name="attention.registered_twice_for_test")
    register(spec)
    with pytest.raises(ValueError, match="registered twice"):
        register(_spec(name="attention.registered_twice_for_test"))


def test_sample_summary_shows_shapes_not_data():
    sample = SampleInput((torch.zeros(2, 3), 5), {"mask": torch.ones(3, dtype=torch.bool)}, name="s")
    assert sample.summary() == "s(Tensor(2, 3):float32, 5, mask=Tensor(3,):bool)"


def test_twins_share_parameters():
    spec = get("attention.strided")
    impls = spec.build(spec.config(), torch.device("cpu"), torch.float32, make_generator(0))
    ref, opt = impls.reference.state_dict(), impls.optimized.state_dict()
    assert list(ref) == list(opt)
    assert all(torch.equal(ref[k], opt[k]) for k in ref)


def test_build_is_deterministic_given_the_generator():
    spec = get("attention.dense")
    a = spec.build(spec.config(), torch.device("cpu"), torch.float32, make_generator(7)).reference.state_dict()
    b = spec.build(spec.config(), torch.device("cpu"), torch.float32, make_generator(7)).reference.state_dict()
    c = spec.build(spec.config(), torch.device("cpu"), torch.float32, make_generator(8)).reference.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_every_spec_has_claims_and_consistent_exponents():
    for spec in list_components():
        assert spec.claims, f"{spec.name} serves no claim"
        for exps in (spec.time_exponent, spec.memory_exponent):
            assert exps is None or set(exps) <= {"reference", "optimized"}, spec.name


def test_plugin_families_register_and_clashes_name_both_origins(monkeypatch):
    import reprobench.registry

    monkeypatch.setattr(reprobench.registry, "_REGISTRY", dict(reprobench.registry._REGISTRY))
    register(_spec(name="acme.fast_attention_for_test"))  # a family of a user's own
    with pytest.raises(ValueError, match=r"registered twice: by .*test_registry and by .*test_registry"):
        register(_spec(name="acme.fast_attention_for_test"))
    builtin = get("attention.strided")
    with pytest.raises(ValueError, match=r"reprobench\.attention\.strided"):
        register(_spec(name="attention.strided"))
    assert get("attention.strided") is builtin


def test_claim_ids_of_plugins_are_checked_and_clashes_named(monkeypatch):
    from reprobench.claims import ledger

    monkeypatch.setattr(ledger, "CLAIM_TEXTS", dict(ledger.CLAIM_TEXTS))
    monkeypatch.setattr(ledger, "_DEFINED_BY", dict(ledger._DEFINED_BY))
    assert ledger.claim("ACMETEST-01", "2x faster than SDPA", source="acme README") == "ACMETEST-01"
    with pytest.raises(ValueError, match=r"EFF-01 defined by .*test_registry clashes .* reprobench \(CLAIMS.md\)"):
        ledger.claim("EFF-01", "mine", source="acme README")
    for bad_id in ("acme-01", "ACME01", "", 7):
        with pytest.raises(ValueError, match="PREFIX-NN"):
            ledger.claim(bad_id, "t", source="s")
    with pytest.raises(ValueError, match="source must say"):
        ledger.claim("ACMETEST-02", "t", source=" ")
