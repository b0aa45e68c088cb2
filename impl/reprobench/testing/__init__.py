"""The generic property suite as a library: the checks (`checks`), derived bad inputs (`bad_inputs`),
input-mutation snapshots (`input_mutation`) and the generic test module (`generic_tests`) that the pytest plugin
(reprobench.pytest_plugin) runs over anyone's registered components."""
