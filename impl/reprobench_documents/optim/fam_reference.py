"""Reference FAMOptimizer: the document's code as written — FAM-01, FAM-02, FAM-03, FAM-04.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), section
"Frequency-Adaptive Momentum (FAM) Optimizer". Update rule per parameter with a gradient:
  grad += weight_decay * p;  if step > fam_start_step and numel > min_size:
      sample the gradient (numel > 10000: a random 64 x 64 row/col sub-block, or 1000 random
      elements of a 1-D tensor; else all of it), band powers = handler.analyze(sample),
      band EMA (first value taken as is, then beta-EMA), alpha_eff = handler rule(bands, alpha)
  exp_avg = alpha_eff * exp_avg + (1 - alpha_eff) * grad;  p -= lr * exp_avg.

Deviations from the document (the smallest changes that make it a usable oracle; each is listed
in the FAM claims' `deviations`):
1. Sampling draws from an explicit ``torch.Generator`` held by the optimizer (``generator=``;
   its state is saved in ``state_dict()['generator_state']``) instead of the global RNG.
2. ``print`` -> ``logging`` (no output on import or construction).
3. Arguments are checked up front (ValueError/TypeError naming the argument); an unknown handler
   name fails at construction instead of as a KeyError inside ``step``; sparse gradients raise
   :class:`SparseGradientError` (a RuntimeError as in the document, and a TypeError).
4. torch.optim conformance (impl/reprobench_documents/optim/optimizer_checks.py): a bare tensor or an empty
   ``params`` is rejected as torch rejects it; complex, integer and 'meta' parameters are rejected;
   every group's hyperparameters are checked when it is added; deepcopy and pickle keep the handlers,
   the generator and the debug settings.
Everything else — handler selection, the try/except fallback, the debug JSON dumps, the unused
``layer_boost`` argument (stored in the groups, never read) — is as written.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime

import torch

from reprobench_documents.optim.fam_handlers import HANDLER_NAMES, document_handlers
from reprobench_documents.optim.optimizer_checks import CheckedOptimizer, SparseGradientError, check_dense_gradient, check_int, \
    check_number, params_list

__all__ = ["FAMOptimizer", "SparseGradientError", "add_handlers_to_groups", "check_fam_args", "check_handlers"]

log = logging.getLogger(__name__)


def check_fam_args(lr, alpha, beta, eps, weight_decay, n_bands=1, fam_start_step=0, min_size=0):
    check_number(lr, "lr", 0.0)
    check_number(eps, "eps", 0.0)
    check_number(weight_decay, "weight_decay", 0.0)
    check_number(alpha, "alpha", 0.0, 1.0)
    check_number(beta, "beta", 0.0, 1.0)
    check_int(n_bands, "n_bands", 1)
    check_int(fam_start_step, "fam_start_step", 0)
    check_int(min_size, "min_size", 0)


def check_fam_group(group: dict) -> None:
    """A FAM parameter group with its defaults filled in: every hyperparameter and the handler."""
    check_fam_args(*(group[k] for k in ("lr", "alpha", "beta", "eps", "weight_decay", "n_bands", "fam_start_step",
                                        "min_size")))
    check_handlers([group])


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def check_handlers(param_groups):
    for group in param_groups:
        if isinstance(group, dict) and group.get("handler", "default") not in HANDLER_NAMES:
            raise ValueError(f"handler must be one of {HANDLER_NAMES}, got {group['handler']!r}")


def add_handlers_to_groups(params):
    """Add appropriate handlers to parameter groups based on type (the document's code, verbatim:
    the inner ``for name in [...]`` shadows the outer ``name``, so ``name in name.lower()`` is always
    true and every named, non-conv group becomes 'attention' — measured in FAM-02)."""
    if isinstance(params, list) and all(isinstance(pg, dict) for pg in params):
        for pg in params:
            if 'handler' not in pg:
                if any('conv' in name.lower() for name in pg.get('names', [])):
                    pg['handler'] = 'conv'
                elif any(name in name.lower() for name in pg.get('names', [])
                         for name in ['attention', 'mha', 'self_attn']):
                    pg['handler'] = 'attention'
                elif any(name in name.lower() for name in pg.get('names', [])
                         for name in ['embed', 'token']):
                    pg['handler'] = 'embedding'
                else:
                    pg['handler'] = 'default'
        return params
    else:
        return [{'params': params, 'handler': 'default'}]


def default_generator(params_device) -> torch.Generator:
    return torch.Generator(device=params_device).manual_seed(0)


def state_dict_with_generator(optimizer) -> dict:
    """torch.optim's state_dict plus the sampling generator's state (a uint8 tensor: weights_only-safe)."""
    state = torch.optim.Optimizer.state_dict(optimizer)
    state["generator_state"] = optimizer.generator.get_state()
    return state


def load_state_dict_with_generator(optimizer, state_dict) -> None:
    """torch.optim's load_state_dict, then the generator's state. String state values (the reference's
    ``param_name``) are put back as saved: torch's loader rebuilds every non-tensor iterable with
    ``type(value)(generator)``, which turns a str into "<generator object ...>"."""
    state_dict = dict(state_dict)
    generator_state = state_dict.pop("generator_state", None)
    torch.optim.Optimizer.load_state_dict(optimizer, state_dict)
    saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for saved_id, p in zip(saved_ids, params):
        for key, value in state_dict["state"].get(saved_id, {}).items():
            if isinstance(value, str):
                optimizer.state[p][key] = value
    if generator_state is not None:
        optimizer.generator.set_state(generator_state)


class FAMOptimizer(CheckedOptimizer):
    """Frequency-Adaptive Momentum optimizer with parameter-specific handlers (the document's)."""

    def __init__(self, params, lr=1e-3, alpha=0.9, beta=0.99, eps=1e-8, weight_decay=0, n_bands=8,
                 fam_start_step=100, layer_boost=True, min_size=256, debug=False, debug_dir='./fam_debug',
                 debug_interval=1000, *, generator: torch.Generator | None = None):
        params = params_list(params)
        check_fam_args(lr, alpha, beta, eps, weight_decay, n_bands, fam_start_step, min_size)
        check_generator(generator)
        check_int(debug_interval, "debug_interval", 1)
        defaults = dict(lr=lr, alpha=alpha, beta=beta, eps=eps, weight_decay=weight_decay, n_bands=n_bands,
                        fam_start_step=fam_start_step, layer_boost=layer_boost, min_size=min_size)
        self.debug = debug
        self.debug_info = {} if debug else None
        self.debug_dir = debug_dir
        self.debug_interval = debug_interval
        self.last_dump_step = 0
        if debug and debug_dir:
            os.makedirs(debug_dir, exist_ok=True)
            self.debug_file = os.path.join(debug_dir, f"fam_debug_{datetime.now().strftime('%m%d_%H%M%S')}.json")
            with open(self.debug_file, 'w') as f:
                json.dump({"optimizer": "FAMOptimizer",
                           "settings": {"lr": lr, "alpha": alpha, "beta": beta, "n_bands": n_bands,
                                        "fam_start_step": fam_start_step},
                           "parameters": {}, "steps_recorded": []}, f, indent=2)
            log.info("FAM debug info will be saved to %s", self.debug_file)
        self.handlers = self._make_handlers()
        param_groups = self._add_handlers_to_groups(params)
        check_handlers(param_groups)
        super().__init__(params=param_groups, defaults=defaults)
        first = next((p for g in self.param_groups for p in g['params']), None)
        self.generator = generator or default_generator(first.device if first is not None else "cpu")
        log.info("FAM Optimizer: lr=%s, alpha=%s, beta=%s, n_bands=%s, fam_start_step=%s, min_size=%s",
                 lr, alpha, beta, n_bands, fam_start_step, min_size)

    def _make_handlers(self):
        return document_handlers()

    def check_group(self, group):
        check_fam_group(group)

    def _add_handlers_to_groups(self, params):
        return add_handlers_to_groups(params)

    def get_handler(self, group):
        return self.handlers[group.get('handler', 'default')]

    def _sample_gradient(self, grad, p):
        """The document's sampling, drawing from self.generator (deviation 1)."""
        g = self.generator
        if p.numel() > 10000:
            if p.dim() > 1:
                row_indices = torch.randperm(p.size(0), generator=g, device=g.device)[:min(p.size(0), 64)]
                col_indices = torch.randperm(p.size(1), generator=g, device=g.device)[:min(p.size(1), 64)]
                return grad[row_indices][:, col_indices].flatten()
            sample_idx = torch.randperm(p.numel(), generator=g, device=g.device)[:1000]
            return grad.flatten()[sample_idx]
        return grad.flatten()

    def state_dict(self):
        return state_dict_with_generator(self)

    def load_state_dict(self, state_dict):
        load_state_dict_with_generator(self, state_dict)

    def dump_debug_info(self, force=False):
        """Save the current debug information to file (as written, truncation included: FAM-04)."""
        if not self.debug or not hasattr(self, 'debug_file'):
            return
        current_step = max([self.state[p]['step'] for p in self.state], default=0)
        if force or (current_step - self.last_dump_step >= self.debug_interval):
            try:
                with open(self.debug_file, 'r') as f:
                    debug_data = json.load(f)
                debug_data["steps_recorded"].append(current_step)
                for param_name, param_info in self.debug_info.items():
                    if param_name not in debug_data["parameters"]:
                        debug_data["parameters"][param_name] = {
                            "handler": param_info.get('handler', 'default'), "steps": [], "bands": [], "alpha": []}
                    last_recorded = len(debug_data["parameters"][param_name]["steps"])
                    if last_recorded < len(param_info['steps']):
                        for key in ("steps", "bands", "alpha"):
                            debug_data["parameters"][param_name][key].extend(param_info[key][last_recorded:])
                with open(self.debug_file, 'w') as f:
                    json.dump(debug_data, f)
                self.last_dump_step = current_step
                for param_info in self.debug_info.values():
                    for key in ("steps", "bands", "alpha"):
                        param_info[key] = param_info[key][-10:]
            except Exception as e:  # as written: a failed dump is logged, training goes on
                log.warning("Error dumping FAM debug info: %s", e)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform a single optimization step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            for p_idx, p in enumerate(group['params']):
                if p.grad is None:
                    continue
                grad = p.grad
                check_dense_gradient(grad, 'FAMOptimizer')
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p)
                    state['freq_history'] = {}
                    state['param_name'] = f"param_{p_idx}"
                state['step'] += 1
                if group['weight_decay'] != 0:
                    grad = grad.add(p, alpha=group['weight_decay'])

                exp_avg = state['exp_avg']
                alpha, beta, lr, n_bands = group['alpha'], group['beta'], group['lr'], group['n_bands']
                handler = self.get_handler(group)
                should_apply_fam = state['step'] > group['fam_start_step'] and p.numel() > group['min_size']

                if should_apply_fam:
                    try:
                        grad_sample = self._sample_gradient(grad, p)
                        band_powers = handler.analyze(grad_sample, n_bands, group['eps'])
                        if state['step'] <= 10 and p_idx == 0:
                            log.debug("Step %d: band powers %s", state['step'], band_powers)
                        for i, power in enumerate(band_powers):
                            band_key = f'band_{i}'
                            if band_key not in state['freq_history']:
                                state['freq_history'][band_key] = power
                            else:
                                state['freq_history'][band_key] = (
                                    beta * state['freq_history'][band_key] + (1 - beta) * power)
                        band_values = [state['freq_history'].get(f'band_{i}', 0) for i in range(n_bands)]
                        effective_alpha = handler.get_adaptive_momentum(band_values, alpha)
                        if self.debug:
                            param_name = state['param_name']
                            if param_name not in self.debug_info:
                                self.debug_info[param_name] = {'steps': [], 'bands': [], 'alpha': [],
                                                               'handler': group.get('handler', 'default')}
                            if state['step'] % 10 == 0:
                                self.debug_info[param_name]['steps'].append(state['step'])
                                self.debug_info[param_name]['bands'].append(band_values)
                                self.debug_info[param_name]['alpha'].append(effective_alpha)
                        exp_avg.mul_(effective_alpha).add_(grad, alpha=1 - effective_alpha)
                    except Exception as e:  # as written: any failure falls back to plain momentum
                        log.debug("FAM processing failed for parameter %d (%s: %s); plain momentum",
                                  p_idx, type(e).__name__, e)
                        exp_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
                else:
                    exp_avg.mul_(alpha).add_(grad, alpha=1 - alpha)

                p.add_(exp_avg, alpha=-lr)

        if self.debug:
            self.dump_debug_info()
        return loss

    def __del__(self):
        """Clean up and final debug dump when optimizer is destroyed"""
        if getattr(self, "debug", False):
            self.dump_debug_info(force=True)
