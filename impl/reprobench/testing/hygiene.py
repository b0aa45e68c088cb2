"""The two tiers of the generated suite, and the findings table of the second.

*Correctness* problems are test failures for every component: a wrong output or gradient, NaN, broken
probabilities, twins that do not share parameters, inputs written to, float32 values in a float64 build,
a random case that disagrees, and a derived call the component declares it accepts
(ComponentSpec.input_support) or a valid input in another layout that gives a wrong answer.

*Input hygiene* is how a component handles input it never declared: derived bad calls
(bad_inputs.KINDS) that end in an error from inside torch, an undeclared input silently accepted, twins
that disagree on whether to raise, and declared error_inputs that do not raise as declared. For
reprobench's own components these fail too (they are held to it). For a plugin's components they are
*findings*: the test passes, the finding is attached to its report (``user_properties``, so it survives
pytest-xdist), and the pytest plugin prints them as one table per component and kind at the end of the
run. ``--reprobench-strict-hygiene`` makes them failures.

An ExpectedFailure covers both tiers: a declared case that fails is an xfail, one that passes fails
(strict), saying to remove the declaration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the pytest plugin imports this module's names; it must not import torch
    from reprobench.registry import ComponentSpec

PROPERTY = "reprobench_hygiene_finding"  # the user_properties key a finding travels under
STRICT_OPTION = "reprobench_strict_hygiene"  # dest of --reprobench-strict-hygiene
COLLECTOR = "reprobench-hygiene-findings"  # the name the pytest plugin registers its collector under


@dataclass(frozen=True)
class Finding:
    component: str
    kind: str  # a bad-input kind, or "error_inputs:<sample name>" for a declared error input
    verdict: str  # what happened ("error from inside torch", "accepted an unsupported input", ...)
    detail: str  # one line: which twin, the exception or the call

    def as_property(self) -> tuple[str, dict]:
        return PROPERTY, asdict(self)


def strict(config, spec: ComponentSpec) -> bool:
    """Whether hygiene problems fail for this component in this run.

    Built-ins always; plugins with --reprobench-strict-hygiene, or where no findings table would be printed
    (the reprobench pytest plugin is not loaded), so a finding can never pass unseen."""
    from reprobench.registry import is_builtin

    if is_builtin(spec) or config.getoption(STRICT_OPTION, default=False):
        return True
    return not config.pluginmanager.has_plugin(COLLECTOR)


def settle(request, spec: ComponentSpec, test: str, findings: list[Finding], failures: list[str], *,
           kind: str | None = None, dtype=None) -> None:
    """End a hygiene-tier test: `failures` (correctness problems) always fail; `findings` fail for built-ins
    and in strict mode, else they are recorded and the test passes. A declared expected failure turns a
    failure or finding into an xfail, and a clean run into a failure that says to remove it."""
    __tracebackhide__ = True  # the failure is the test's, not this helper's
    expected = spec.expected_failure(test, dtype=dtype, kind=kind)
    problems = failures + [f"{f.kind}: {f.verdict}: {f.detail}" for f in findings]
    case = f"{test}" + (f"[{kind}]" if kind else "") + (f" in {dtype}" if dtype is not None else "")
    if expected is not None:
        if problems:
            pytest.xfail(f"{expected.reason} (got: {problems[0][:200]})")
        pytest.fail(f"[XPASS(strict)] {spec.name}: {case} is declared an expected failure ({expected.reason!r}) "
                    "but now passes; remove that ExpectedFailure from the spec", pytrace=False)
    if failures or (findings and strict(request.config, spec)):
        tier = "correctness" if failures else "input hygiene"
        raise AssertionError(f"{spec.name}, {case} ({tier}):\n" + "\n".join(problems))
    for finding in findings:
        request.node.user_properties.append(finding.as_property())
