"""The registry: declarations are validated, lookups work, every family fits."""
import pytest
import torch

from reprobench.registry import (ComponentSpec, ErrorInput, ExpectedFailure, InputSupport, SampleInput, Tolerance,
                                 get, is_builtin, list_components, make_generator, register)


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
    (dict(claims=("",)), "claims must be claim IDs"),
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
    with pytest.raises(ValueError, match=r"reprobench_documents\.attention\.strided"):
        register(_spec(name="attention.strided"))
    assert get("attention.strided") is builtin


def test_claim_ids_of_plugins_are_checked_and_clashes_named(monkeypatch):
    from reprobench.claims import ledger

    monkeypatch.setattr(ledger, "CLAIM_TEXTS", dict(ledger.CLAIM_TEXTS))
    monkeypatch.setattr(ledger, "DECLARED_BY", dict(ledger.DECLARED_BY))
    assert ledger.claim("ACMETEST-01", "2x faster than SDPA", source="acme README") == "ACMETEST-01"
    with pytest.raises(ValueError, match=r"EFF-01 defined by .*test_registry clashes .* reprobench_documents\.experiments\.eff"):
        ledger.claim("EFF-01", "mine", source="acme README")
    for bad_id in ("acme-01", "ACME01", "", 7):
        with pytest.raises(ValueError, match="PREFIX-NN"):
            ledger.claim(bad_id, "t", source="s")
    with pytest.raises(ValueError, match="source must say"):
        ledger.claim("ACMETEST-02", "t", source=" ")


def test_error_input_accepts_only_value_and_type_errors():
    """The README's rule, enforced at declaration: a RuntimeError or AssertionError is what an unchecked argument
    raises from inside torch, so declaring it would let the missing check pass."""
    sample = SampleInput((torch.zeros(2),), name="rank1")
    for allowed in (ValueError, TypeError, type("AcmeShapeError", (ValueError,), {})):
        assert ErrorInput(sample, allowed, "x").error_type is allowed
    for refused in (RuntimeError, AssertionError, Exception, IndexError, "ValueError", (ValueError, RuntimeError)):
        with pytest.raises(TypeError, match=r"rank1: error_type=.* is not allowed; bad input must raise ValueError or "
                                            r"TypeError .* naming the argument"):
            ErrorInput(sample, refused, "x")


def test_every_builtin_error_input_is_a_value_or_type_error():
    for spec in list_components():
        if spec.error_inputs is not None:
            for dtype in spec.dtypes:  # ErrorInput.__post_init__ raises on a forbidden type
                assert all(issubclass(e.error_type, (ValueError, TypeError))
                           for e in spec.error_inputs(torch.device("cpu"), dtype, make_generator(0))), spec.name


@pytest.mark.parametrize("make,match", [
    (lambda: ExpectedFailure("bad_input_is_handled", "r", kind="rank_pluss"), "not a bad-input kind; choose one of"),
    (lambda: ExpectedFailure("matches_reference", "r", kind="rank_plus"), "kind applies to test='bad_input_is_handled'"),
    (lambda: ExpectedFailure("matches_reference", "r", dtype="float32"), "expected a torch.dtype"),
    (lambda: ExpectedFailure("random_cases", "r"), "not a generic test; choose one of"),
    (lambda: ExpectedFailure("bad_input_is_handled", ""), "reason is empty: say which defect"),
    (lambda: _spec(expected_failures=(ExpectedFailure("matches_reference", "r", dtype=torch.float16),)),
     "names a dtype the component is not tested in"),
    (lambda: _spec(test_tolerances={"gradients_match_reference": {torch.float64: Tolerance(1e-7, 1e-7)}}),
     r"needs a Tolerance\(atol, rtol, reason=...\) whose reason says why"),
    (lambda: _spec(test_tolerances={"outputs_finite": {torch.float64: Tolerance(1e-7, 1e-7, reason="r")}}),
     "the tests with a tolerance are"),
    (lambda: Tolerance(-1.0, 0.0), "atol=-1.0: expected a number >= 0"),
    (lambda: InputSupport(low_precision=(torch.int8,)), "expected torch.float16 and/or torch.bfloat16"),
])
def test_declarations_fail_at_registration_with_what_to_fix(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_expected_failures_and_tolerances_apply_to_the_cases_they_name():
    grad = Tolerance(1e-7, 1e-6, reason="the package adds eps=1e-8 inside the norm")
    spec = _spec(expected_failures=(ExpectedFailure("bad_input_is_handled", "no rank check", kind="rank_plus"),
                                    ExpectedFailure("matches_reference", "float32 only", dtype=torch.float32)),
                 test_tolerances={"gradients_match_reference": {torch.float64: grad}})
    assert spec.expected_failure("bad_input_is_handled", kind="rank_plus").reason == "no rank check"
    assert spec.expected_failure("bad_input_is_handled", kind="rank_minus") is None
    assert spec.expected_failure("matches_reference", dtype=torch.float32) is not None
    assert spec.expected_failure("matches_reference", dtype=torch.float64) is None
    assert spec.tolerance(torch.float64, "gradients_match_reference") is grad
    assert spec.tolerance(torch.float64, "matches_reference") == spec.tolerances[torch.float64]


def test_a_plugin_states_why_it_accepts_more_or_loosens_a_tolerance(monkeypatch):
    """Reasons are required of plugin components (built-ins predate the rule and give theirs in comments)."""
    import reprobench.registry

    monkeypatch.setattr(reprobench.registry, "_REGISTRY", dict(reprobench.registry._REGISTRY))
    with pytest.raises(ValueError, match="InputSupport declares what the component accepts but gives no reason"):
        register(_spec(name="acme.no_reason_support", input_support=InputSupport(empty_batch=True)))
    loose = {torch.float32: Tolerance(1e-3, 1e-3)}
    with pytest.raises(ValueError, match=r"tolerances\[torch.float32\] .* is looser than the default .* no reason"):
        register(_spec(name="acme.no_reason_tolerance", tolerances=loose))
    register(_spec(name="acme.with_reasons", input_support=InputSupport(empty_batch=True, reason="torch layers do"),
                   tolerances={torch.float32: Tolerance(1e-3, 1e-3, reason="accumulates in bfloat16")}))
    register(_spec(name="acme.tighter", tolerances={torch.float32: Tolerance(1e-6, 1e-6)}))  # tighter: no reason needed
    assert is_builtin(get("attention.dense")) and not is_builtin(get("acme.with_reasons"))


def test_a_component_serving_an_undeclared_claim_fails_the_claim_check():
    from reprobench import registry

    spec = _spec(name="typo.dense", claims=("eff7",))
    registry._REGISTRY[spec.name] = spec
    try:
        with pytest.raises(ValueError, match=r"typo.dense: claim ID\(s\) \['eff7'\] not in the ledger"):
            registry.check_claim_ids()
    finally:
        del registry._REGISTRY[spec.name]
