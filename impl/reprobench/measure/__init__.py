"""Measurement: time, peak memory, FLOPs, host syncs, scaling fits, environment fingerprint."""
from reprobench.measure.environment import fingerprint
from reprobench.measure.flops import count_flops, flop_counter_mode
from reprobench.measure.memory import (PeakMemory, allocator_peak_bytes, available_bytes, fake_peak_tensor_bytes,
                                       optimizer_state_bytes, peak_tensor_bytes)
from reprobench.measure.stats import (Decision, Estimate, ExponentFit, combine_outcomes, decide, exact, fit_exponent,
                                      fit_exponent_estimate, max_estimate, mean_interval, median_interval, min_estimate,
                                      proportion_estimate, ratio_from_rounds, sample_ratio_until_decided,
                                      MIN_R2, sample_mean_until_decided, sample_means_until_decided)
from reprobench.measure.syncs import count_device_syncs, count_host_syncs
from reprobench.measure.timing import (Comparison, Timing, compare_interleaved, decide_speedup, decide_time_ratio,
                                       seconds_per_call, synchronize, time_callable, time_interleaved)

__all__ = [
    "fingerprint", "count_flops", "flop_counter_mode", "PeakMemory", "allocator_peak_bytes", "available_bytes",
    "fake_peak_tensor_bytes", "peak_tensor_bytes", "optimizer_state_bytes", "fit_exponent", "count_host_syncs",
    "count_device_syncs",
    "Comparison", "Timing", "compare_interleaved", "decide_speedup", "time_callable", "time_interleaved",
    "decide_time_ratio", "seconds_per_call", "synchronize", "MIN_R2", "sample_mean_until_decided",
    "sample_means_until_decided",
    "Decision", "Estimate", "ExponentFit", "combine_outcomes", "decide", "exact", "fit_exponent_estimate",
    "mean_interval", "median_interval", "ratio_from_rounds", "sample_ratio_until_decided", "max_estimate",
    "min_estimate", "proportion_estimate",
]
