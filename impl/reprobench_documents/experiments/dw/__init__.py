"""DW-01 … DW-08: "Dynamic Weighting Formula Implementation" (documents/000_294012e263fd6301.txt).

Components: regularizers.invariance / .variance / .covariance and attention.dynamic_weighting.
Every rule below is written before its measurement and only reads the measured numbers.

Modules: regularizer_properties (DW-01 … DW-03), covariance_chunking (DW-04), dynamic_weights (DW-05),
oom_fallback (DW-06), layer_memory (DW-07), few_shot_digits (DW-08); helpers shared by several in _common.
"""
