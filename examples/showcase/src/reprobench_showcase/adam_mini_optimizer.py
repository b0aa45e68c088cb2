"""adam-mini 1.1.1, judged from its README.

README (pypi.org/project/adam-mini): "the official PyTorch implementation of Adam-mini, a mini-version
of Adam that achieves on-par or better performance than AdamW with 45% to 50% less memory footprint"
(paper: Adam-mini: Use Fewer Learning Rates To Gain More, arXiv 2406.16793). Transformers pass `dim`,
`n_heads`, `n_kv_heads`; each "could be unspecified if you are training non-transformer models".

The paper's algorithm, written here as the reference: Adam's first moment per element; the second
moment is one number per block, the moving average of the block's mean squared gradient, and every
element of a block takes the step lr * m_hat / (sqrt(v_hat) + eps). Blocks: one per head for queries
and keys, one per output neuron (row) for embeddings, the output layer, values, the attention output
projection and MLPs, a single element for biases, the whole tensor otherwise (norms). Weight decay is
decoupled (p *= 1 - lr * wd) and skipped for norms and biases.

Components (both twins run `steps` steps on the same parameters and gradients and return the final
parameters; size = steps):
- `showcase.adam_mini`: Adam_mini on a one-layer Qwen2-like parameter set (Hugging Face names) (grouped-query attention).
- `showcase.adamw`: torch.optim.AdamW against the textbook AdamW update: the baseline of the memory
  claims, and a check that reprobench's generic suite passes torch's own optimizer.
Claims: ADAMMINI-* here (those that need code) and in claims.toml.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adam_mini import Adam_mini
from reprobench import (ComponentSpec, Implementations, InputSupport, Outcome, SampleInput, claim, decide, experiment,
                        make_generator, optimizer_state_bytes, register)

SOURCE = "adam-mini 1.1.1 README"


@dataclass(frozen=True)
class Layout:
    """A transformer layer's parameters as Adam-mini sees them: names and shapes."""

    dim: int  # hidden size
    n_heads: int  # query heads
    n_kv_heads: int  # key/value heads (grouped-query attention)
    vocab: int  # embedding and output rows

    def parameters(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of each parameter, in order."""
        d, kv = self.dim, self.dim * self.n_kv_heads // self.n_heads
        # Hugging Face's Qwen2 names (a Llama with q/k/v biases), one decoder layer.
        return [
            ("model.embed_tokens.weight", (self.vocab, d)),
            ("model.layers.0.input_layernorm.weight", (d,)),
            ("model.layers.0.self_attn.q_proj.weight", (d, d)),
            ("model.layers.0.self_attn.q_proj.bias", (d,)),
            ("model.layers.0.self_attn.k_proj.weight", (kv, d)),
            ("model.layers.0.self_attn.k_proj.bias", (kv,)),
            ("model.layers.0.self_attn.v_proj.weight", (kv, d)),
            ("model.layers.0.self_attn.v_proj.bias", (kv,)),
            ("model.layers.0.self_attn.o_proj.weight", (d, d)),
            ("model.layers.0.post_attention_layernorm.weight", (d,)),
            ("model.layers.0.mlp.gate_proj.weight", (4 * d, d)),
            ("model.layers.0.mlp.up_proj.weight", (4 * d, d)),
            ("model.layers.0.mlp.down_proj.weight", (d, 4 * d)),
            ("model.norm.weight", (d,)),
            ("lm_head.weight", (self.vocab, d)),
        ]


TEST_LAYOUT = Layout(dim=8, n_heads=2, n_kv_heads=1, vocab=11)
BENCH_LAYOUT = Layout(dim=512, n_heads=8, n_kv_heads=2, vocab=8192)
HYPER = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)


def role_of(name: str, shape) -> str:
    """The paper's block for a parameter, read from its name's dotted/underscored words: 'head', 'row',
    'element' (biases) or 'tensor' (norms and anything unnamed). A 1-D tensor is never cut into rows."""
    words = set(name.lower().replace("_", ".").split("."))
    if len(shape) == 1:
        return "element" if "bias" in words else "tensor"
    if words & {"q", "k", "wq", "wk", "query", "key"} and words & {"proj", "wq", "wk", "query", "key"}:
        return "head"
    if words & {"embed", "embd", "wte", "lm", "output", "v", "wv", "value", "o", "wo", "mlp", "up", "down", "gate"}:
        return "row"
    return "tensor"


def _blocks(t: torch.Tensor, role: str, head_numel: int) -> torch.Tensor:
    """t viewed as (blocks, elements per block)."""
    if role == "head":
        return t.reshape(-1, head_numel)
    if role == "row":
        return t.reshape(t.shape[0], -1)
    if role == "element":
        return t.reshape(-1, 1)
    return t.reshape(1, -1)


class AdamMiniReference(torch.optim.Optimizer):
    """The paper's Adam-mini, one parameter at a time, as readable as it gets."""

    def __init__(self, named_parameters, *, lr, betas, eps, weight_decay, dim, n_heads):
        named = list(named_parameters)
        groups = [dict(params=[p], role=role_of(name, p.shape)) for name, p in named]
        super().__init__(groups, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.head_numel = dim * dim // n_heads

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (p,), role = group["params"], group["role"]
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            g = p.grad
            state = self.state[p]
            if not state:
                state["t"] = 0
                state["m"] = torch.zeros_like(p)
                state["v"] = torch.zeros(_blocks(p, role, self.head_numel).shape[0], 1, dtype=p.dtype, device=p.device)
            state["t"] += 1
            t = state["t"]
            if role in ("head", "row"):  # norms and biases are not decayed
                p.mul_(1 - lr * group["weight_decay"])
            state["m"] = beta1 * state["m"] + (1 - beta1) * g
            state["v"] = beta2 * state["v"] + (1 - beta2) * _blocks(g * g, role, self.head_numel).mean(dim=1, keepdim=True)
            m_hat = state["m"] / (1 - beta1 ** t)
            v_hat = state["v"] / (1 - beta2 ** t)
            p.sub_(lr * (_blocks(m_hat, role, self.head_numel) / (v_hat.sqrt() + eps)).reshape(p.shape))


class AdamWReference(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter), every parameter decayed, as torch.optim.AdamW does by default."""

    def __init__(self, params, *, lr, betas, eps, weight_decay):
        super().__init__(list(params), dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["m"] = beta1 * state["m"] + (1 - beta1) * p.grad
                state["v"] = beta2 * state["v"] + (1 - beta2) * p.grad * p.grad
                m_hat, v_hat = state["m"] / (1 - beta1 ** t), state["v"] / (1 - beta2 ** t)
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


class OptimizerSteps:
    """Run an optimizer: `run(*initial_parameters, *gradient_sequences)` -> the final parameters.

    The parameters are fresh leaves (copies: the caller's tensors are not written); gradient sequence i
    is (steps, *shape of parameter i). `make(params)` builds the optimizer alone (reprobench's optimizer
    claims call it): parameters are named after the layout's where the count matches, else as a plain
    model's ("weight_0", "bias_1"): Adam-mini routes parameters by name."""

    def __init__(self, make_named, names):
        self.make_named, self.names = make_named, names  # make_named(named_parameters) -> a torch.optim.Optimizer

    def make(self, params) -> torch.optim.Optimizer:
        params = list(params)
        names = self.names if len(params) == len(self.names) else [
            f"{'bias' if p.dim() == 1 else 'weight'}_{i}" for i, p in enumerate(params)]
        return self.make_named(list(zip(names, params)))

    def __call__(self, *tensors):
        count = len(self.names)
        if len(tensors) != 2 * count:
            raise TypeError(f"tensors: expected {count} parameters and {count} gradient sequences, got {len(tensors)} tensors")
        for i, (p, g) in enumerate(zip(tensors[:count], tensors[count:])):
            if not (p.is_floating_point() and g.is_floating_point()) or g.dtype != p.dtype:
                raise TypeError(f"tensors[{i}] and tensors[{count + i}]: expected one floating dtype for a parameter and "
                                f"its gradients, got {p.dtype} and {g.dtype}")
            if g.dim() != p.dim() + 1 or g.shape[1:] != p.shape:
                raise ValueError(f"tensors[{count + i}]: expected gradients of shape (steps, *{tuple(p.shape)}), "
                                 f"got {tuple(g.shape)}")
        params = [torch.nn.Parameter(t.detach().clone()) for t in tensors[:count]]
        optimizer = self.make(params)
        for t in range(tensors[count].shape[0]):
            for p, g_seq in zip(params, tensors[count:]):
                p.grad = g_seq[t].clone()
            optimizer.step()
        return tuple(p.detach() for p in params)


def _hyper(config) -> dict:
    return {key: config[key] for key in HYPER}


def build_adam_mini(config, device, dtype, generator) -> Implementations:
    layout = config["layout"]
    names = [name for name, _ in layout.parameters()]
    dims = dict(dim=layout.dim, n_heads=layout.n_heads)

    def package(named):
        return Adam_mini(named, **_hyper(config), **dims, n_kv_heads=layout.n_kv_heads, verbose=False)

    def reference(named):
        return AdamMiniReference(named, **_hyper(config), **dims)

    return Implementations(reference=OptimizerSteps(reference, names), optimized=OptimizerSteps(package, names))


def build_adamw(config, device, dtype, generator) -> Implementations:
    names = [name for name, _ in config["layout"].parameters()]

    def package(named):
        return torch.optim.AdamW([p for _, p in named], **_hyper(config))

    def reference(named):
        return AdamWReference([p for _, p in named], **_hyper(config))

    return Implementations(reference=OptimizerSteps(reference, names), optimized=OptimizerSteps(package, names))


def training_inputs(layout: Layout):
    def sample_inputs(steps, device, dtype, generator):
        shapes = [shape for _, shape in layout.parameters()]

        def draw(*shape):  # on the CPU from the CPU generator, then moved: the same values on any device
            return torch.randn(*shape, dtype=dtype, generator=generator).to(device)
        inits = [draw(*s) for s in shapes]
        grads = [draw(steps, *s) for s in shapes]
        return [SampleInput(tuple(inits) + tuple(grads), name="qwen2_like")]
    return sample_inputs


def _register(name: str, description: str, build) -> None:
    register(ComponentSpec(
        name=name,
        claims=(),
        description=description,
        build=build,
        sample_inputs=training_inputs(TEST_LAYOUT),
        default_config=dict(layout=TEST_LAYOUT, **HYPER),
        test_sizes=(1, 3, 10),
        size_name="steps",
        bench_config=dict(layout=BENCH_LAYOUT, **HYPER),
        bench_inputs=training_inputs(BENCH_LAYOUT),
        bench_sizes=(1, 2, 4),
        supports_backward=False,  # an optimizer step is not differentiated
        # bfloat16 only: in float16, eps = 1e-8 rounds to 0 and AdamW divides by sqrt(v) = 0 where a gradient
        # squares to 0 (the suite finds it); that is a fact of float16, not of either package.
        input_support=InputSupport(low_precision=(torch.bfloat16,),
                                   reason="optimizers step bfloat16 parameters, as torch.optim's do (Adam-mini is "
                                          "used for bfloat16 LLM training)"),
    ))


_register("showcase.adam_mini", "adam-mini 1.1.1 Adam_mini on a Qwen2-like layer vs the paper's algorithm", build_adam_mini)
_register("showcase.adamw", "torch.optim.AdamW vs the textbook AdamW update (the baseline of ADAMMINI-11)", build_adamw)


# --- claims that need code ---------------------------------------------------------------------------

claim("ADAMMINI-01", "dim, n_heads and n_kv_heads could be unspecified if you are training non-transformer models.",
      source=SOURCE)

# Small non-transformer models, each an ordinary torch.nn.Sequential or module tree; their parameter names
# are what model.named_parameters() gives.
NON_TRANSFORMERS = {
    "mlp_in_nn.Sequential_named_network": lambda: torch.nn.ModuleDict({"network": torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(), torch.nn.Linear(16, 2))}),
    "cnn_with_keypoint_head": lambda: torch.nn.ModuleDict({
        "backbone": torch.nn.Conv2d(3, 8, 3), "keypoint_head": torch.nn.Conv2d(8, 4, 1)}),
    "gru_with_output_layer": lambda: torch.nn.ModuleDict({
        "gru": torch.nn.GRU(6, 8), "output_norm": torch.nn.LayerNorm(8), "output": torch.nn.Linear(8, 2)}),
    "plain_linear_regression": lambda: torch.nn.Sequential(torch.nn.Linear(6, 1)),
}


@experiment("ADAMMINI-01")
def non_transformers_need_no_dims(ctx) -> Outcome:
    generator = make_generator(ctx.seed)
    measured, failures = {}, 0
    for label, make_model in NON_TRANSFORMERS.items():
        model = make_model().to(ctx.device)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator).to(ctx.device)
        try:
            optimizer = Adam_mini(model.named_parameters(), lr=1e-3, verbose=False)
            optimizer.step()
            measured[label] = "steps"
        except Exception as error:  # the claim is that it works: any exception is the counterexample
            measured[label] = f"{type(error).__name__}: {error}"
            failures += 1
    decision = decide("non_transformer_models_whose_first_step_raises", failures, at_most=0)
    return Outcome(
        claimed="Adam_mini works on non-transformer models with dim, n_heads, n_kv_heads left unspecified",
        measured=measured,
        rule=f"Deterministic count over {len(NON_TRANSFORMERS)} small non-transformer models (named_parameters() "
             "as torch names them, random gradients, one step with the defaults): models whose first step raises; "
             "holds if 0.",
        evidence=decision.describe() + "; " + "; ".join(f"{k}: {v}" for k, v in measured.items()),
        decisions=[decision])


claim("ADAMMINI-02", "Adam-mini keeps 45% to 50% less memory than AdamW: its optimizer state, on the README's "
                     "transformer setting (dim, n_heads, n_kv_heads passed), is at most 55% of AdamW's.", source=SOURCE)


@experiment("ADAMMINI-02")
def state_is_half_of_adamw(ctx) -> Outcome:
    layout = BENCH_LAYOUT  # one step, deterministic and cheap: quick runs measure the same
    generator = make_generator(ctx.seed)
    names = [name for name, _ in layout.parameters()]
    shapes = [shape for _, shape in layout.parameters()]
    measured = {}
    for label in ("adam_mini", "adamw"):
        params = [torch.nn.Parameter(torch.randn(s, generator=generator).to(ctx.device)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).to(ctx.device)
        optimizer = (Adam_mini(list(zip(names, params)), **HYPER, dim=layout.dim, n_heads=layout.n_heads,
                               n_kv_heads=layout.n_kv_heads, verbose=False)
                     if label == "adam_mini" else torch.optim.AdamW(params, **HYPER))
        optimizer.step()
        measured[f"{label}_state_bytes"] = optimizer_state_bytes(optimizer)
    measured["parameter_bytes"] = sum(4 * math.prod(s) for s in shapes)
    ratio = measured["adam_mini_state_bytes"] / measured["adamw_state_bytes"]
    measured["state_ratio"] = ratio
    decision = decide("adam_mini_state_over_adamw_state", ratio, at_most=0.55)
    return Outcome(
        claimed="45% to 50% less memory than AdamW (optimizer state)",
        measured=measured,
        rule=f"Deterministic: bytes of every tensor in the optimizer state after one step, Adam-mini / AdamW, on a "
             f"Qwen2-like layer (dim {layout.dim}, {layout.n_heads} heads, {layout.n_kv_heads} kv heads, vocab "
             f"{layout.vocab}, float32); holds if <= 0.55 (at least 45% less).",
        evidence=decision.describe(),
        decisions=[decision])


claim("ADAMMINI-03", "If you are training Transformers, pass dim, n_heads and n_kv_heads: Adam-mini then trains them.",
      source=SOURCE)


def _bert(d=8, vocab=11, ff=16):
    """Hugging Face BertModel's parameter names (one layer), with their shapes."""
    layer = "encoder.layer.0."
    names = [("embeddings.word_embeddings.weight", (vocab, d)), ("embeddings.position_embeddings.weight", (16, d)),
             ("embeddings.token_type_embeddings.weight", (2, d)), ("embeddings.LayerNorm.weight", (d,)),
             ("embeddings.LayerNorm.bias", (d,))]
    for part in ("query", "key", "value"):
        names += [(f"{layer}attention.self.{part}.weight", (d, d)), (f"{layer}attention.self.{part}.bias", (d,))]
    names += [(f"{layer}attention.output.dense.weight", (d, d)), (f"{layer}attention.output.dense.bias", (d,)),
              (f"{layer}attention.output.LayerNorm.weight", (d,)), (f"{layer}attention.output.LayerNorm.bias", (d,)),
              (f"{layer}intermediate.dense.weight", (ff, d)), (f"{layer}intermediate.dense.bias", (ff,)),
              (f"{layer}output.dense.weight", (d, ff)), (f"{layer}output.dense.bias", (d,)),
              (f"{layer}output.LayerNorm.weight", (d,)), (f"{layer}output.LayerNorm.bias", (d,)),
              ("pooler.dense.weight", (d, d)), ("pooler.dense.bias", (d,))]
    return names


def _gpt2(d=8, vocab=11):
    """Hugging Face GPT2Model's parameter names (one layer; Conv1D weights are (in, out))."""
    names = [("wte.weight", (vocab, d)), ("wpe.weight", (16, d))]
    for ln in ("h.0.ln_1", "h.0.ln_2", "ln_f"):
        names += [(f"{ln}.weight", (d,)), (f"{ln}.bias", (d,))]
    for name, shape in (("h.0.attn.c_attn", (d, 3 * d)), ("h.0.attn.c_proj", (d, d)), ("h.0.mlp.c_fc", (d, 4 * d)),
                        ("h.0.mlp.c_proj", (4 * d, d))):
        names += [(f"{name}.weight", shape), (f"{name}.bias", (shape[1],))]
    return names


TRANSFORMERS = {"hf_bert": _bert, "hf_gpt2": _gpt2, "hf_qwen2": TEST_LAYOUT.parameters}


@experiment("ADAMMINI-03")
def transformers_train_given_dims(ctx) -> Outcome:
    generator = make_generator(ctx.seed)
    measured, failures = {}, 0
    for label, named_shapes in TRANSFORMERS.items():
        named = [(name, torch.nn.Parameter(torch.randn(shape, generator=generator).to(ctx.device)))
                 for name, shape in named_shapes()]
        for _, p in named:
            p.grad = torch.randn(p.shape, generator=generator).to(ctx.device)
        try:
            # Every model here has hidden size 8 and 2 heads (Qwen2: 1 key/value head).
            optimizer = Adam_mini(named, lr=1e-3, dim=8, n_heads=2, n_kv_heads=1 if label == "hf_qwen2" else None,
                                  verbose=False)
            optimizer.step()
            measured[label] = "steps"
        except Exception as error:  # the claim is that it trains them: any exception is the counterexample
            measured[label] = f"{type(error).__name__}: {error}"
            failures += 1
    decision = decide("transformers_whose_first_step_raises", failures, at_most=0)
    return Outcome(
        claimed="Adam_mini trains Transformers when given dim, n_heads and n_kv_heads",
        measured=measured,
        rule=f"Deterministic count over {len(TRANSFORMERS)} one-layer transformers, parameters named as Hugging Face "
             "names them (BertModel, GPT2Model, Qwen2Model), random gradients, one step: models whose first step "
             "raises; holds if 0.",
        evidence=decision.describe() + "; " + "; ".join(f"{k}: {v}" for k, v in measured.items()),
        decisions=[decision])
