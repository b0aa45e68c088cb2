"""FAM-05: SimpleFAM's alpha_eff rule, read back from its buffer update."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import decide
from reprobench.registry import make_generator

TOLERANCE = 1e-6  # alpha_eff read back in float64; the ratio itself is computed in float32 by SimpleFAM
CLAIMED = "after 100 steps, for tensors over 1000 elements, alpha_eff = min(0.98, alpha + 0.05 * high-frequency ratio)"
RULE = (f"an exact error (float64 parameters, deterministic draws), one decision: the largest |alpha_eff read back from "
        f"SimpleFAM's buffer update - the formula| (or - alpha where the rule must not apply) over the boundaries numel "
        f"1000/1001, step 100/101 and the 0.98 cap: at most {TOLERANCE:g}")


@experiment("FAM-05", needs=("float64",),
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'SimpleFAM: after 100 steps, for tensors over 1000 elements, alpha_eff = min(0.98, alpha + 0.05 *'
                ' high-frequency ratio).'))
def simple_fam_rule(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.simple_fam import SimpleFAM

    g = make_generator(ctx.seed)

    def observed_alpha(numel, steps, alpha, grad):
        """alpha_eff of the last step, read back from the buffer update of SimpleFAM as written."""
        p = torch.zeros(numel, dtype=torch.float64, device=ctx.device, requires_grad=True)
        opt = SimpleFAM([p], lr=0.0, alpha=alpha)
        for t in range(steps):
            before = opt.state[p]["exp_avg"].clone() if t == steps - 1 and opt.state[p] else None
            p.grad = grad[:numel].clone() * (1 + t % 2)  # alternate the scale so the buffer never equals grad
            opt.step()
        after = opt.state[p]["exp_avg"]
        g_last = p.grad
        return float(((after - g_last) / (before - g_last))[0])

    grad_white = torch.randn(1200, dtype=torch.float64, generator=g).to(ctx.device)
    grad_high = grad_white.abs() * torch.tensor([1.0, -1.0], dtype=torch.float64, device=ctx.device).repeat(600)
    cases = []
    for numel, steps, alpha, grad in ((1001, 101, 0.9, grad_white), (1000, 101, 0.9, grad_white),
                                      (1001, 100, 0.9, grad_white), (1200, 103, 0.95, grad_high)):
        power = torch.fft.rfft(grad[:1000].float() * (1 + (steps - 1) % 2)).abs()
        ratio = float(power[power.shape[0] // 2:].sum() / (power.sum() + 1e-8))
        formula = min(0.98, alpha + 0.05 * ratio) if numel > 1000 and steps > 100 else alpha
        cases.append((numel, steps, alpha, ratio, observed_alpha(numel, steps, alpha, grad), formula))
    max_err = max(abs(obs - exp) for *_, obs, exp in cases)
    measured = {f"alpha_eff_n{n}_step{s}_a{a}": obs for n, s, a, _, obs, _ in cases}
    measured.update({f"formula_n{n}_step{s}_a{a}": exp for n, s, a, _, _, exp in cases}, max_abs_error=max_err,
                    high_ratio_alternating=cases[-1][3])
    return Outcome(
        decisions=[decide("max_abs_error", max_err, at_most=TOLERANCE)],
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=f"SimpleFAM as written, float64 params on {ctx.device.type}, lr=0: boundaries and cap as stated (max error {max_err:.1e}; "
                 f"alternating-sign gradient ratio {cases[-1][3]:.2f} hits the 0.98 cap with alpha=0.95). The ratio "
                 f"is taken from the first 1000 elements only, and `beta` is accepted but never used.",
        deviations=DEVIATIONS)
