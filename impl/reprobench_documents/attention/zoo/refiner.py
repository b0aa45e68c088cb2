"""Refiner: tabular Q-learning over attention spans — ZOO-05.

Source: documents/002_3edd67eb5ef57768.txt, "3. Reinforcement Learning Enhanced Attention": only
``Refiner(states, actions, alpha=0.1, gamma=0.9, epsilon=0.1)`` with ``self.R = {}`` and "Q-learning
for optimizing attention parameters ... learn optimal attention spans through exploration and
exploitation". We implement the standard method: ε-greedy tabular Q-learning (Watkins 1989),

    Q(s, a) <- Q(s, a) + α · (r + γ · max_a' Q(s', a') − Q(s, a)),

with the Q table in the document's dict ``R`` keyed by (state, action), 0 where absent; greedy ties
go to the lowest action index. Randomness is drawn up front from an explicit generator: per step one
uniform decides exploration (u < ε), one picks the exploratory action (⌊u·A⌋), one the start state of
each episode (⌊u·S⌋ every ``episode_len`` steps).

The registered callable is "run ``steps`` steps of B independent learners on an environment given
as tensors (reward[S, A], next_state[S, A]) and return their Q tables (B, S, A)". Reference: one
Refiner per learner, Python floats and dicts, as the document's class would be used. Optimized: the
B learners advance together as one (B, S, A) tensor with gather/index_put — no host syncs, one set of
tensor ops per step instead of B Python updates (steps are sequential by nature; learners are not).
"""
from __future__ import annotations

import torch

from reprobench_documents.attention.base import check_positive_int
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, Tolerance, register
from reprobench.validation import check_index_range, check_like, check_tensor


class Refiner:
    """Refiner(states, actions, alpha, gamma, epsilon): ε-greedy tabular Q-learning."""

    def __init__(self, states, actions, alpha=0.1, gamma=0.9, epsilon=0.1):
        self.states = check_positive_int(states, "states")
        self.actions = check_positive_int(actions, "actions")
        for name, value, low_open in (("alpha", alpha, True), ("gamma", gamma, False), ("epsilon", epsilon, False)):
            if not isinstance(value, (int, float)) or not ((0 < value <= 1) if low_open else (0 <= value <= 1)):
                raise ValueError(f"{name} must be a float in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
        self.alpha, self.gamma, self.epsilon = float(alpha), float(gamma), float(epsilon)
        self.R = {}  # Q table: (state, action) -> value

    def value(self, state, action) -> float:
        return self.R.get((state, action), 0.0)

    def choose_action(self, state, explore_u: float, action_u: float) -> int:
        if explore_u < self.epsilon:
            return min(int(action_u * self.actions), self.actions - 1)
        values = [self.value(state, a) for a in range(self.actions)]
        return values.index(max(values))

    def update(self, state, action, reward, next_state) -> None:
        best_next = max(self.value(next_state, a) for a in range(self.actions))
        old = self.value(state, action)
        self.R[(state, action)] = old + self.alpha * (reward + self.gamma * best_next - old)


def check_environment(states, actions, rewards, next_state, uniforms):
    """Shapes and dtypes only (no host sync). float64 only: the reference computes in Python floats,
    so a lower precision would drift from it (a flipped greedy tie sends a learner elsewhere)."""
    check_tensor("rewards", rewards, shape=(states, actions), dtypes=(torch.float64,))
    check_tensor("next_state", next_state, shape=(states, actions), dtypes=(torch.int64,), same_device_as=rewards,
                 like_what="rewards")
    check_tensor("uniforms", uniforms, shape=("learners", "steps", 3), dtypes=(torch.float64,))
    check_like("uniforms", uniforms, rewards, "rewards")


class RefinerRun:
    """Run B learners for uniforms.shape[1] steps: (rewards, next_state, uniforms) -> Q (B, S, A)."""

    def __init__(self, states, actions, alpha=0.1, gamma=0.9, epsilon=0.1, episode_len=8, path="optimized"):
        Refiner(states, actions, alpha, gamma, epsilon)  # validates the arguments
        self.states, self.actions, self.alpha, self.gamma, self.epsilon = states, actions, alpha, gamma, epsilon
        self.episode_len = check_positive_int(episode_len, "episode_len")
        self.path = path

    def __call__(self, rewards, next_state, uniforms):
        check_environment(self.states, self.actions, rewards, next_state, uniforms)
        if self.path == "reference":
            check_index_range("next_state", next_state, self.states)  # the reference reads every entry anyway
            return self.reference(rewards, next_state, uniforms)
        try:
            return self.optimized(rewards, next_state, uniforms)
        except (IndexError, RuntimeError):
            # gather refuses an index outside [0, states) without a host sync; only on that failure do
            # we read next_state back, to say which argument was wrong
            check_index_range("next_state", next_state, self.states)
            raise

    def reference(self, rewards, next_state, uniforms):
        learners, steps, _ = uniforms.shape
        tables = torch.zeros(learners, self.states, self.actions, dtype=rewards.dtype, device=rewards.device)
        for b in range(learners):
            refiner = Refiner(self.states, self.actions, self.alpha, self.gamma, self.epsilon)
            state = 0
            for t in range(steps):
                explore_u, action_u, start_u = uniforms[b, t].tolist()
                if t % self.episode_len == 0:
                    state = min(int(start_u * self.states), self.states - 1)
                action = refiner.choose_action(state, explore_u, action_u)
                following = int(next_state[state, action])
                refiner.update(state, action, float(rewards[state, action]), following)
                state = following
            for (s, a), value in refiner.R.items():
                tables[b, s, a] = value
        return tables

    def optimized(self, rewards, next_state, uniforms):
        learners, steps, _ = uniforms.shape
        # one gather over the whole table checks every index on the device (no host sync), so a bad
        # entry fails even where no learner happens to visit it, as in the reference
        rewards.new_zeros(self.states).gather(0, next_state.flatten())
        q = torch.zeros(learners, self.states, self.actions, dtype=rewards.dtype, device=rewards.device)
        rows = torch.arange(learners, device=rewards.device)
        state = torch.zeros(learners, dtype=torch.long, device=rewards.device)
        for t in range(steps):  # steps are sequential; the learners move together
            explore_u, action_u, start_u = uniforms[:, t].unbind(-1)
            if t % self.episode_len == 0:
                state = (start_u * self.states).long().clamp(max=self.states - 1)
            greedy = q[rows, state].argmax(-1)  # first maximum, like list.index(max(...))
            explore = (action_u * self.actions).long().clamp(max=self.actions - 1)
            action = torch.where(explore_u < self.epsilon, explore, greedy)
            following = next_state[state, action]
            # gather, not q[rows, following]: advanced indexing would wrap a negative state around
            best_next = q.gather(1, following.view(-1, 1, 1).expand(-1, 1, self.actions)).squeeze(1).amax(-1)
            old = q[rows, state, action]
            q = q.index_put((rows, state, action), old + self.alpha * (rewards[state, action] + self.gamma * best_next - old))
            state = following
        return q


def span_environment(states: int, target: int, device=None, dtype=torch.float64):
    """Toy span-tuning task: state = span bin, actions (shrink, keep, grow); reward −|next − target|/S.

    The optimal greedy action moves toward ``target`` and keeps it there."""
    s = torch.arange(states, device=device)
    next_state = torch.stack([(s - 1).clamp(min=0), s, (s + 1).clamp(max=states - 1)], dim=1)
    rewards = -(next_state - target).abs().to(dtype) / states
    optimal = torch.where(s < target, 2, torch.where(s > target, 0, 1))
    return rewards, next_state, optimal


def _build(config, device, dtype, generator):
    return Implementations(reference=RefinerRun(**config, path="reference"), optimized=RefinerRun(**config, path="optimized"))


TEST_CONFIG = dict(states=6, actions=3, alpha=0.5, gamma=0.9, epsilon=0.2, episode_len=8)


def _samples(steps, device, dtype, generator):
    rewards, next_state, _ = span_environment(TEST_CONFIG["states"], 3, device, dtype)
    uniforms = torch.rand(3, steps, 3, generator=generator, device=device, dtype=dtype)
    return [SampleInput((rewards, next_state, uniforms), name="span_task_3_learners")]


def _errors(device, dtype, generator):
    rewards, next_state, _ = span_environment(TEST_CONFIG["states"], 3, device, dtype)
    uniforms = torch.rand(2, 5, 3, generator=generator, device=device, dtype=dtype)
    return [
        ErrorInput(SampleInput((rewards[:, :2], next_state, uniforms), name="rewards_shape"), ValueError, r"rewards: expected"),
        ErrorInput(SampleInput((rewards, next_state.float(), uniforms), name="next_state_dtype"), TypeError, r"next_state: expected"),
        ErrorInput(SampleInput((rewards, next_state, uniforms[..., :2]), name="uniforms_shape"), ValueError, r"uniforms: expected"),
        ErrorInput(SampleInput((rewards, next_state, uniforms), name="states_zero"), ValueError, r"states must be >= 1",
                   config=dict(TEST_CONFIG, states=0)),
        ErrorInput(SampleInput((rewards, next_state, uniforms), name="alpha_zero"), ValueError, r"alpha must be",
                   config=dict(TEST_CONFIG, alpha=0.0)),
        ErrorInput(SampleInput((rewards, next_state, uniforms), name="epsilon_range"), ValueError, r"epsilon must be",
                   config=dict(TEST_CONFIG, epsilon=1.5)),
    ]


register(ComponentSpec(
    name="attention.zoo_refiner",
    claims=("ZOO-05",),
    description="Refiner: ε-greedy tabular Q-learning over spans; reference dict per learner, optimized batched tensors",
    build=_build,
    sample_inputs=_samples,
    error_inputs=_errors,
    default_config=TEST_CONFIG,
    test_sizes=(1, 7, 40),
    bench_sizes=(100, 200, 400),
    size_name="steps",
    # Python floats are float64: the reference's arithmetic matches float64 exactly; in float32 a
    # rounding difference can flip a greedy tie and send the learners down different trajectories.
    tolerances={torch.float64: Tolerance(atol=1e-12, rtol=1e-10)},
    supports_backward=False,
))
