"""FAM-07: does FAM help training? A tiny embed+conv+attention model against SGD-momentum, SimpleFAM, AdamW."""
from __future__ import annotations

import math
import statistics

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import sample_mean_until_decided
from reprobench.registry import make_generator

SEEDS = 3  # seeds of the first look, and of the SimpleFAM / AdamW curves (reported, not judged)
SEED_BUDGET_S = 90.0  # seeds are added while the gap is undecided, until this is spent (full run)
RULE = (f"held-out loss (the training objective on unseen data: what 'helps optimisation' changes), one decision: FAM "
        f"minus SGD-momentum (the same EMA momentum and lr without the frequency adaptation), paired per seed, the mean "
        f"over seeds with its Student-t interval: at most 0 (FAM lower). Seeds are samples: looks at {SEEDS}, "
        f"{2 * SEEDS}, {4 * SEEDS} seeds, each at 1 - 0.05/3 (Bonferroni), seeds added while the interval straddles 0, "
        f"within {SEED_BUDGET_S:g} s. Holds if the whole interval is <= 0, fails if it is wholly above 0, else "
        f"inconclusive. SimpleFAM and AdamW are reported, not judged")


class _TinyModel(torch.nn.Module):
    """Token embedding -> conv -> self-attention -> mean pool -> linear: one group per FAM handler."""

    def __init__(self, vocab=32, dim=32, classes=4):
        super().__init__()
        self.tok_embed = torch.nn.Embedding(vocab, dim)
        self.conv = torch.nn.Conv1d(dim, dim, 3, padding=1)
        self.self_attn = torch.nn.MultiheadAttention(dim, 4, batch_first=True)
        self.head = torch.nn.Linear(dim, classes)

    def forward(self, x):
        h = self.tok_embed(x)
        h = h + self.conv(h.transpose(1, 2)).transpose(1, 2).relu()
        h = h + self.self_attn(h, h, h, need_weights=False)[0]
        return self.head(h.mean(1))


def _init_(model, generator):
    """Uniform +-1/sqrt(fan_in) for weights, N(0, 1) embeddings, zero biases — from an explicit generator."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed" in name:
                p.normal_(generator=generator)
            elif p.dim() > 1:
                bound = 1 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.zero_()
    return model


def _named_groups(model):
    groups = {}
    for name, p in model.named_parameters():
        groups.setdefault(name.split(".")[0], ([], []))
        groups[name.split(".")[0]][0].append(name)
        groups[name.split(".")[0]][1].append(p)
    return [{"params": ps, "names": names} for names, ps in groups.values()]


def _train(make_opt, seed, steps, data, device):
    """Initialise and draw the batches on the CPU from the seed's generator (the same run on every device), train
    on `device`; the losses are read back once at the end."""
    x, y, x_val, y_val = data
    g = make_generator(seed)
    model = _init_(_TinyModel(), g).to(device)
    opt = make_opt(model, seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g).to(device)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    with torch.no_grad():
        val = float(torch.nn.functional.cross_entropy(model(x_val), y_val))
    return torch.stack(losses).tolist(), val


@experiment("FAM-07",
            sizes={"full": {"steps": 200, "seed_budget_s": SEED_BUDGET_S},
                   "quick": {"steps": 40, "seed_budget_s": SEED_BUDGET_S / 4}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'Motivation: frequency-adaptive momentum helps optimisation of attention/embedding/conv '
                'parameters. Train a small model with FAM, SimpleFAM and SGD-momentum/AdamW baselines, same '
                'budget, several seeds; report loss curves.'))
def training_comparison(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.fam import FAM
    from reprobench_documents.optim.simple_fam import SimpleFAMFast

    plt = pyplot()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    steps = ctx.sizes["steps"]
    g = make_generator(ctx.seed)
    # data made in code: labels from a fixed random teacher of the same architecture
    teacher = _init_(_TinyModel(), make_generator(ctx.seed + 1000))
    x = torch.randint(0, 32, (2560, 16), generator=g)
    with torch.no_grad():
        y = teacher(x).argmax(-1)
    x, y = x.to(ctx.device), y.to(ctx.device)
    data = (x[:2048], y[:2048], x[2048:], y[2048:])
    start = steps // 3
    optimizers = {
        "FAM": lambda m, s: FAM(_named_groups(m), lr=0.3, alpha=0.9, fam_start_step=start,
                                generator=make_generator(s, ctx.device)),
        "SimpleFAM": lambda m, s: SimpleFAMFast(m.parameters(), lr=0.3, alpha=0.9),
        "SGD-momentum": lambda m, s: torch.optim.SGD(m.parameters(), lr=0.3, momentum=0.9, dampening=0.9),
        "AdamW": lambda m, s: torch.optim.AdamW(m.parameters(), lr=3e-3),
    }
    runs: dict[str, list] = {name: [] for name in optimizers}

    def seed_gap(i: int) -> float:
        # One sample: FAM and SGD-momentum trained from the same seed (paired); the unjudged optimizers are
        # trained on the first SEEDS seeds only, for the figure.
        seed = ctx.seed + i
        for name, make in optimizers.items():
            if name in ("FAM", "SGD-momentum") or i < SEEDS:
                runs[name].append(_train(make, seed, steps, data, ctx.device))
        return runs["FAM"][-1][1] - runs["SGD-momentum"][-1][1]

    try:
        decision, diff = sample_mean_until_decided(
            seed_gap, quantity="fam_minus_sgd_momentum_val_loss", at_most=0.0, min_samples=SEEDS,
            budget_s=ctx.sizes["seed_budget_s"])
    finally:
        torch.set_num_threads(threads)
    seeds = [ctx.seed + i for i in range(len(diff))]
    gap = decision.estimate
    final = {name: [val for _, val in r] for name, r in runs.items()}
    mean = {name: statistics.mean(v) for name, v in final.items()}

    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    window = max(1, steps // 30)
    for name, r in runs.items():
        curves = torch.tensor([losses for losses, _ in r])  # (seeds run for this optimizer, steps)
        smooth = torch.nn.functional.avg_pool1d(curves.mean(0)[None, None], window, 1)[0, 0]
        ax.plot(range(window - 1, steps), smooth.tolist(), label=f"{name} (val {mean[name]:.3f})")
    ax.axvline(start, color="gray", ls=":", lw=1)
    ax.set(xlabel="step", ylabel="train loss (mean over seeds, smoothed)",
           title="tiny embed+conv+attention model")
    ax.legend(fontsize=8)
    ax_gap.plot([0] * len(diff), diff, "o", color="tab:blue", alpha=0.6, label="per seed")
    ax_gap.errorbar([0.3], [gap.point], yerr=[[gap.point - gap.low], [gap.high - gap.point]], fmt="s", color="k",
                    capsize=4, label=f"mean, {gap.confidence:.1%} t interval")
    ax_gap.axhline(0.0, color="r", ls="--", label="rule: <= 0 (FAM lower)")
    ax_gap.set(xlim=(-0.5, 0.8), xticks=[], ylabel="held-out loss, FAM - SGD-momentum", title="judged gap")
    ax_gap.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("fam07_training.png"), dpi=110)
    plt.close(fig)
    measured = {f"val_loss_{name}": m for name, m in mean.items()}
    measured.update({f"val_loss_sd_{name}": statistics.stdev(v) for name, v in final.items()},
                    fam_minus_sgd_mean=gap.point, steps=steps, seeds=len(seeds))
    return Outcome(
        decisions=[decision],
        claimed="frequency-adaptive momentum helps optimisation of attention/embedding/conv parameters",
        measured=measured,
        rule=RULE,
        evidence=f"Embedding+conv+self-attention classifier on 16-token sequences labelled by a random teacher "
                 f"(2048 train / 512 held out), batch 64, {steps} steps, {len(seeds)} seeds, float32 on "
                 f"{ctx.device.type}, FAM from step {start}. Held-out loss: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in mean.items())
                 + f"; FAM - SGD-momentum = {gap} (mean, {gap.confidence:.1%} t interval over {len(seeds)} paired "
                 f"seeds, {decision.extra['looks']} look(s)).",
        figures=["fam07_training.png"], deviations=DEVIATIONS)
