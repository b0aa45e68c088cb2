"""Measurement: time, peak memory, FLOPs, host syncs, scaling fits, environment fingerprint."""
from impl.measure.environment import fingerprint
from impl.measure.flops import count_flops, flop_counter_mode
from impl.measure.memory import PeakMemory, allocator_peak_bytes, fake_peak_tensor_bytes, peak_tensor_bytes
from impl.measure.scaling import ScalingFit, fit_exponent
from impl.measure.syncs import count_host_syncs
from impl.measure.timing import Comparison, Timing, compare_interleaved, time_callable, time_interleaved

__all__ = [
    "fingerprint", "count_flops", "flop_counter_mode", "PeakMemory", "allocator_peak_bytes",
    "fake_peak_tensor_bytes", "peak_tensor_bytes", "ScalingFit", "fit_exponent", "count_host_syncs",
    "Comparison", "Timing", "compare_interleaved", "time_callable", "time_interleaved",
]
