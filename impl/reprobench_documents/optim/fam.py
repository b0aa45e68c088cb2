"""Optimized FAM: the document's FAMOptimizer update, batched and free of host syncs — FAM-01..04.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt); the reference is
impl/reprobench_documents/optim/fam_reference.py (the document's code, per parameter, with ``.item()`` per band).

Same rule, computed differently:
- sample indices are drawn from the optimizer's generator in the reference's order (same
  generator -> same samples), on the parameter's device;
- gradients whose samples have the same (handler, length) are stacked and go through ONE rFFT;
  band powers are the normalised |rFFT| times a cached 0/1 band-membership matrix
  (impl/reprobench_documents/optim/fam_handlers.band_matrix replays each handler's index arithmetic);
- the band EMA lives in ``state['band_ema']`` (a tensor), the handler rules are ``torch.where``
  on tensors, and the momentum/parameter updates are ``torch._foreach_*`` over each group.
Nothing reads a device value on the host, so a step makes 0 host syncs (the reference makes one
per band per parameter, plus the handler's comparisons), and on CUDA it queues without stalls.

Known limits: no debug JSON (use the reference for FAM-04); the effective momentum is a
discontinuous function of the band powers, so reference and optimized agree exactly except when a
band sum lies within float32 rounding (~1e-7) of a threshold — a probability-zero event for real data.
A non-finite gradient makes its parameter non-finite in both twins, but inf may come out as NaN here
(lerp computes inf - inf). What FAM shares with torch.optim (copies keep the generator, params and
per-group checks) is in impl/reprobench_documents/optim/optimizer_checks.py.
"""
from __future__ import annotations

import torch

from reprobench_documents.optim.fam_handlers import band_matrix
from reprobench_documents.optim.fam_reference import FAMOptimizer, add_handlers_to_groups, check_fam_args, check_fam_group, \
    check_generator, check_handlers, default_generator, load_state_dict_with_generator, state_dict_with_generator
from reprobench_documents.optim.optimizer_checks import CheckedOptimizer, check_dense_gradient, params_list
from reprobench_documents.optim.fam_runs import OPTIMIZER_INPUT_SUPPORT, OptimizerRun, optimizer_error_inputs, optimizer_samples
from reprobench.registry import ComponentSpec, Implementations, Tolerance, register


def document_momentum(kind: str, bands: torch.Tensor, alpha: float) -> torch.Tensor:
    """The four handlers' get_adaptive_momentum on a (G, n_bands) batch -> (G,) alpha_eff."""
    n = bands.shape[-1]

    def const(value):  # 0-d on the bands' device: no host-to-device copy of a list
        return bands.new_full((), value)

    if kind == "attention":
        top = bands.argmax(-1)  # first maximum, like np.argmax
        return torch.where(top < n // 4, const(max(0.85, alpha - 0.05)),
                           torch.where(top > 3 * n // 4, const(min(0.98, alpha + 0.08)), const(alpha)))
    if kind == "conv":
        mid, high = bands[:, n // 4:(3 * n) // 4].sum(-1), bands[:, (3 * n) // 4:].sum(-1)
        return torch.where(mid > 0.4, const(min(0.97, alpha + 0.07)),
                           torch.where(high > 0.3, const(min(0.95, alpha + 0.05)), const(alpha)))
    if kind == "embedding":
        return torch.where(bands[:, (3 * n) // 4:].sum(-1) > 0.2, const(min(0.98, alpha + 0.08)), const(alpha))
    return torch.where(bands[:, n // 2:].sum(-1) > 0.3, const(min(0.95, alpha + 0.05)), const(alpha))


def _foreach(name, foreach, *lists, **kwargs):
    if foreach:
        getattr(torch, f"_foreach_{name}")(*lists, **kwargs)
    else:
        for args in zip(*lists):
            getattr(args[0], name)(*args[1:], **kwargs)


class FAM(CheckedOptimizer):
    """FAM(params, lr, alpha, beta, eps, weight_decay, n_bands, fam_start_step, layer_boost, min_size,
    *, generator=None, foreach=None): FAMOptimizer's update, batched; no debug dumps."""

    sample_gradient = FAMOptimizer._sample_gradient  # the same draws from the same generator

    def __init__(self, params, lr=1e-3, alpha=0.9, beta=0.99, eps=1e-8, weight_decay=0, n_bands=8,
                 fam_start_step=100, layer_boost=True, min_size=256, *, generator: torch.Generator | None = None,
                 foreach: bool | None = None):
        params = params_list(params)
        check_fam_args(lr, alpha, beta, eps, weight_decay, n_bands, fam_start_step, min_size)
        check_generator(generator)
        defaults = dict(lr=lr, alpha=alpha, beta=beta, eps=eps, weight_decay=weight_decay, n_bands=n_bands,
                        fam_start_step=fam_start_step, layer_boost=layer_boost, min_size=min_size)
        groups = self._add_handlers_to_groups(params)
        check_handlers(groups)
        super().__init__(groups, defaults)
        first = next((p for g in self.param_groups for p in g["params"]), None)
        self.generator = generator or default_generator(first.device if first is not None else "cpu")
        self.foreach = True if foreach is None else bool(foreach)
        self._matrices: dict = {}

    def _add_handlers_to_groups(self, params):
        return add_handlers_to_groups(params)

    def add_param_group(self, param_group):
        if isinstance(param_group, dict):
            param_group.setdefault("handler", "default")  # as the reference's group.get('handler', 'default')
        super().add_param_group(param_group)

    def check_group(self, group):
        check_fam_group(group)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._matrices = {}  # a cache, rebuilt on demand

    def _band_matrix(self, kind, n_freqs, n_bands, device):
        key = (kind, n_freqs, n_bands, device)
        if key not in self._matrices:
            self._matrices[key] = band_matrix(kind, n_freqs, n_bands, device)
        return self._matrices[key]

    def _momentum(self, kind, bands, alpha):
        return document_momentum(kind, bands, alpha)

    def state_dict(self):
        return state_dict_with_generator(self)

    def load_state_dict(self, state_dict):
        load_state_dict_with_generator(self, state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss

    def _group_step(self, group):
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            check_dense_gradient(p.grad, type(self).__name__)
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:  # lazy state, as torch.optim does
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        grads = [p.grad for p in params]
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"]) if self.foreach else \
                [g.add(p, alpha=group["weight_decay"]) for g, p in zip(grads, params)]
        alpha, kind = group["alpha"], group["handler"]

        buckets: dict = {}  # (length, dtype, has_ema) -> [(sample, index)]
        plain = []
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            if not (state["step"] > group["fam_start_step"] and p.numel() > group["min_size"]):
                plain.append(i)
                continue
            sample = self.sample_gradient(g, p)  # draws even where the handler then fails, as the reference
            if self._band_matrix(kind, sample.numel() // 2 + 1, group["n_bands"], p.device) is None:
                plain.append(i)  # the reference's except-branch: plain momentum
                continue
            buckets.setdefault((sample.numel(), p.dtype, "band_ema" in state), []).append((sample, i))

        for (length, dtype, has_ema), members in buckets.items():
            idx = [i for _, i in members]
            power = torch.fft.rfft(torch.stack([s for s, _ in members]).float()).abs()  # (G, F)
            total = power.sum(-1, keepdim=True)
            power = torch.where(total > 0, power / (total + group["eps"]), power)
            bands = (power @ self._band_matrix(kind, length // 2 + 1, group["n_bands"], power.device)).to(dtype)
            if has_ema:
                old = torch.stack([states[i]["band_ema"] for i in idx])
                bands = torch.add(old * group["beta"], bands, alpha=1 - group["beta"])
            for i, row in zip(idx, bands.unbind(0)):
                states[i]["band_ema"] = row
            alpha_eff = self._momentum(kind, bands, alpha).to(dtype)  # (G,)
            # exp_avg = a * exp_avg + (1 - a) * g as one lerp: one pass over memory instead of two
            _foreach("lerp_", self.foreach, [states[i]["exp_avg"] for i in idx], [grads[i] for i in idx],
                     list((1 - alpha_eff).unbind(0)))

        if plain:
            buffers, plain_grads = [states[i]["exp_avg"] for i in plain], [grads[i] for i in plain]
            if self.foreach:
                torch._foreach_lerp_(buffers, plain_grads, 1 - alpha)
            else:
                for b, g in zip(buffers, plain_grads):
                    b.lerp_(g, 1 - alpha)
        _foreach("add_", self.foreach, params, [s["exp_avg"] for s in states], alpha=-group["lr"])


# --- registration ---------------------------------------------------------------------------------

DEFAULT_CONFIG = dict(lr=0.01, alpha=0.9, beta=0.9, eps=1e-8, weight_decay=0.01, n_bands=8, fam_start_step=2,
                      min_size=64)
BAD_CONFIGS = {
    "negative_lr": (dict(lr=-0.1), ValueError, r"lr must be >= 0"),
    "negative_eps": (dict(eps=-1e-8), ValueError, r"eps must be >= 0"),
    "alpha_one": (dict(alpha=1.0), ValueError, r"alpha must be in \[0.0, 1.0\)"),
    "beta_negative": (dict(beta=-0.1), ValueError, r"beta must be in \[0.0, 1.0\)"),
    "n_bands_zero": (dict(n_bands=0), ValueError, r"n_bands must be an int >= 1"),
    "unknown_handler": (dict(handler="fourier"), ValueError, r"handler must be one of"),
}


def make_fam_pair(reference_cls, optimized_cls):
    """build(): both twins run the same steps with a generator seeded from the registry's."""

    def build(config, device, dtype, generator):
        config = dict(config)
        handler = config.pop("handler", None)
        check_fam_args(**{k: config[k] for k in ("lr", "alpha", "beta", "eps", "weight_decay", "n_bands",
                                                  "fam_start_step", "min_size")})
        if handler is not None:
            check_handlers([{"handler": handler}])
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        return Implementations(*(OptimizerRun(cls, config, handler, seed, str(device), config["fam_start_step"] + 1)
                                 for cls in (reference_cls, optimized_cls)))

    return build


# What every FAM pair declares alike (this one and fam_corrected's): the twins differ only in their classes.
FAM_SPEC_FIELDS = dict(
    claims=("FAM-01", "FAM-02", "FAM-03"),
    sample_inputs=optimizer_samples,
    error_inputs=optimizer_error_inputs(DEFAULT_CONFIG, BAD_CONFIGS),
    default_config=DEFAULT_CONFIG,
    test_sizes=(1, 4, 9),
    bench_sizes=(10, 20),
    size_name="steps",
    tolerances={torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=1e-5, rtol=1e-4)},
    supports_backward=False,
    input_support=OPTIMIZER_INPUT_SUPPORT,
)

register(ComponentSpec(
    name="optim.fam",
    description="FAMOptimizer as written (per-parameter loops, .item() per band) vs batched, sync-free FAM",
    build=make_fam_pair(FAMOptimizer, FAM),
    **FAM_SPEC_FIELDS,
))
