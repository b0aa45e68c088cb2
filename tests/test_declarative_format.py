"""The claim-file fields added for training steps, optimizers, other components, memory overhead and
configs that grow with n: each mistake is one line naming the file, the claim and the field, and what was
expected; nothing in a file is evaluated. Components are the toys of declarative_toys.py, registered for
this module only. The README's TOML examples are parsed too (their components stubbed)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.declarative_toys import registered
from reprobench.claims import declarative, kinds_config
from reprobench.claims.declarative import ClaimFileError, parse_claim_file
from reprobench.claims.kinds_config import SizeRule

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'id = "TOY-01"\ntext = "a README sentence"\nsource = "a README"\n'
SPEEDUP = 'kind = "speedup"\ncomponent = "toy.linear"\nsize = 64\nat_least = 1.5\n'
PEAK = 'kind = "peak_memory"\ncomponent = "toy.linear"\nimplementation = "optimized"\nsize = 64\nat_most_mib = 1\n'
EXPONENT = 'kind = "memory_exponent"\ncomponent = "toy.linear"\nimplementation = "optimized"\nsizes = [16, 64]\nat_most = 1.1\n'


@pytest.fixture(scope="module", autouse=True)
def toys(tmp_path_factory):
    with registered(tmp_path_factory.mktemp("draws")) as specs:
        yield specs


def parse(tmp_path: Path, body: str):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]]\n" + HEAD + body, encoding="utf-8")
    return parse_claim_file(path)


# case -> (claim body, the field the error names, words it must contain)
MISTAKES = {
    "call_unknown": (SPEEDUP + 'baseline = "reference"\ncall = "backward"\n', "call", "expected one of"),
    "loss_without_backward": (SPEEDUP + 'baseline = "reference"\nloss = "mean"\n', "loss", "only with call"),
    "loss_unknown": (SPEEDUP + 'baseline = "reference"\ncall = "forward_backward"\nloss = "max"\n', "loss",
                     "expected one of ('sum', 'mean')"),
    "optimizer_without_train_step": (SPEEDUP + 'baseline = "reference"\noptimizer = "adamw"\n', "optimizer",
                                     "only with call = \"train_step\""),
    "optimizer_unknown": (SPEEDUP + 'baseline = "reference"\ncall = "train_step"\noptimizer = "toy.lamb"\n',
                          "optimizer", "registered optimizer component"),
    "steps_with_forward": (SPEEDUP + 'baseline = "reference"\nsteps = 3\n', "steps", "only with call"),
    "steps_zero": (SPEEDUP + 'baseline = "reference"\ncall = "train_step"\nsteps = 0\n', "steps", "integer >= 1"),
    "state_of_a_forward": (PEAK + 'measure = "optimizer_state"\n', "measure", "needs call = \"optimizer_step\""),
    "measure_unknown": (PEAK + 'measure = "total"\n', "measure", "expected one of"),
    "measure_on_flops": ('kind = "flops_ratio"\ncomponent = "toy.linear"\nbaseline = "reference"\nsize = 8\n'
                         'at_least = 1\nmeasure = "peak"\n', "measure", "unknown key"),
    "fresh_inputs_not_bool": (SPEEDUP + 'baseline = "reference"\nfresh_inputs = "yes"\n', "fresh_inputs",
                              "expected true or false"),
    "fresh_inputs_untimed": (PEAK + "fresh_inputs = true\n", "fresh_inputs", "unknown key"),
    "no_baseline": (SPEEDUP, "against", "missing"),
    "baseline_and_against": (SPEEDUP + 'baseline = "reference"\nagainst = "toy.linear_other"\n', "against", "not both"),
    "against_itself": (SPEEDUP + 'against = "toy.linear"\n', "against", "the component itself"),
    "against_unknown": (SPEEDUP + 'against = "toy.nowhere"\n', "against", "no registered component 'toy.nowhere'"),
    "same_output_without_against": (SPEEDUP + 'baseline = "reference"\nsame_output = true\n', "same_output",
                                    "only with `against`"),
    "against_implementation_without_against": (SPEEDUP + 'baseline = "reference"\nagainst_implementation = '
                                               '"reference"\n', "against_implementation", "only with `against`"),
    "config_not_a_table": (PEAK + 'config = "chunk=2"\n', "config", "expected a table"),
    "config_typo": (PEAK + "config = { chunck = 2 }\n", "config.chunck", "not a key of toy.linear's bench config"),
    "config_wrong_type": (PEAK + "config = { chunk = 2.5 }\n", "config.chunk", "expected a value of type int"),
    "rule_is_an_expression": (EXPONENT + '[claim.config_per_size]\nchunk = "sqrt(n)"\n', "config_per_size.chunk",
                              "expected a rule table"),
    "rule_unknown_field": (EXPONENT + '[claim.config_per_size]\nchunk = { power = 0.5, scale = "sqrt" }\n',
                           "config_per_size.chunk.scale", "unknown rule field"),
    "rule_without_power": (EXPONENT + "[claim.config_per_size]\nchunk = { times = 2 }\n",
                           "config_per_size.chunk.power", "missing"),
    "rule_power_too_large": (EXPONENT + "[claim.config_per_size]\nchunk = { power = 9 }\n",
                             "config_per_size.chunk.power", "in [-4, 4]"),
    "rule_times_negative": (EXPONENT + "[claim.config_per_size]\nchunk = { power = 1, times = -1 }\n",
                            "config_per_size.chunk.times", "> 0"),
    "rule_rounding_unknown": (EXPONENT + '[claim.config_per_size]\nchunk = { power = 1, round = "up" }\n',
                              "config_per_size.chunk.round", "expected one of"),
    "rule_min_zero": (EXPONENT + "[claim.config_per_size]\nchunk = { power = 1, min = 0 }\n",
                      "config_per_size.chunk.min", "integer >= 1"),
    "rule_key_typo": (EXPONENT + "[claim.config_per_size]\nchunks = { power = 1 }\n", "config_per_size.chunks",
                      "not a key of toy.linear's bench config"),
    "rule_and_value": (EXPONENT + "config = { chunk = 2 }\n[claim.config_per_size]\nchunk = { power = 1 }\n",
                       "config_per_size.chunk", "also set in `config`"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_each_new_field_is_checked_with_a_one_line_error(case, tmp_path):
    body, name, words = MISTAKES[case]
    with pytest.raises(ClaimFileError) as raised:
        parse(tmp_path, body)
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert "claim #1 (TOY-01)" in message and f"field {name!r}" in message and words in message, message


def test_a_rule_on_a_float_setting_is_refused(tmp_path):
    body = ('kind = "peak_memory"\ncomponent = "toy.lion"\nimplementation = "optimized"\nsize = 8\nat_most_mib = 1\n'
            'call = "optimizer_step"\n[claim.config_per_size]\nlr = { power = 1 }\n')
    with pytest.raises(ClaimFileError, match=r"field 'config_per_size.lr': the bench config's value is 0.0001; a rule "
                                             "gives integers only"):
        parse(tmp_path, body)


def test_valid_fields_are_normalised(tmp_path):
    (item,) = parse(tmp_path, SPEEDUP + 'baseline = "toy.linear_other"\nbaseline_implementation = "reference"\n'
                    'call = "train_step"\noptimizer = "toy.lion"\nsteps = 2\nloss = "mean"\nconfig = { chunk = 5 }\n')
    # `baseline = "<component>"` is the older spelling of `against`
    assert item.fields["against"] == "toy.linear_other" and item.fields["against_implementation"] == "reference"
    assert "baseline" not in item.fields and item.fields["config"] == {"chunk": 5}
    (item,) = parse(tmp_path, EXPONENT + '[claim.config_per_size]\nchunk = { power = 0.5, times = 2, round = "ceil" }\n')
    rule = item.fields["config_per_size"]["chunk"]
    assert rule == SizeRule(power=0.5, times=2.0, round="ceil", min=1)


@pytest.mark.parametrize("rule, values", [
    (SizeRule(power=0.5), {1: 1, 16: 4, 17: 4, 20: 4, 21: 5, 4096: 64}),
    (SizeRule(power=0.5, round="ceil"), {16: 4, 17: 5, 4097: 65}),
    (SizeRule(power=0.5, round="floor", times=2), {16: 8, 17: 8, 24: 9}),
    (SizeRule(power=1, times=0.25, min=3), {4: 3, 64: 16}),
    (SizeRule(power=-1, times=1024, round="floor"), {32: 32, 4096: 1}),
])
def test_size_rules_give_the_stated_integers(rule, values):
    assert {n: rule.at(n) for n in values} == values


def test_the_readme_examples_parse(tmp_path, monkeypatch):
    """Every `[[claim]]` block of the README's TOML examples, with its components stubbed (they live in the
    example plugin or in an imagined optimizer package): a field the README shows must be a real field."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", readme, flags=re.S) if "[[claim]]" in b]
    assert blocks, "the README's declarative-claim examples are gone"
    names = set(re.findall(r'(?:component|against|baseline|optimizer) = "([a-z_]+\.[a-z_]+)"', "".join(blocks)))
    configs = {key for key in re.findall(r"^(\w+) = \{", "".join(blocks), flags=re.M)}

    class Stub:
        size_name = "n"

        def config(self, overrides=None, *, bench=False):
            return {key: 1 for key in configs}

    from reprobench import registry

    real = registry.list_components()
    stubs = [type("Spec", (), {"name": name})() for name in names]
    monkeypatch.setattr(registry, "list_components", lambda pattern="*": real + stubs)
    monkeypatch.setattr(registry, "get", lambda name: Stub())
    monkeypatch.setattr(kinds_config, "_bench_config", lambda component: Stub().config())
    kinds = set()
    for index, block in enumerate(blocks):
        path = tmp_path / f"readme_{index}.toml"
        path.write_text(block, encoding="utf-8")
        items = parse_claim_file(path)
        kinds.update(item.kind for item in items)
    shown = {"memory_ratio", "speedup", "peak_memory", "memory_exponent"}
    assert shown <= kinds, f"the README shows no example of {sorted(shown - kinds)}"
    assert set(declarative.KINDS) >= kinds


def test_every_kind_is_one_statement_and_quick_is_judged_only_where_it_measures_the_same(tmp_path):
    from reprobench.claims.declarative_kinds import declaration_for

    (peak,) = parse(tmp_path, PEAK)
    (quick_peak,) = parse(tmp_path, PEAK + "quick_size = 8\n")
    (timed,) = parse(tmp_path, SPEEDUP + 'baseline = "reference"\n')
    assert declaration_for(peak) == {"logic": "all-of", "quick_judged": True}
    assert declaration_for(quick_peak) == {"logic": "all-of", "quick_judged": False}  # another size
    assert declaration_for(timed) == {"logic": "all-of", "quick_judged": False}  # fewer, shorter rounds
