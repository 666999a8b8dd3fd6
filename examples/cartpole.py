"""CartPole: EGGROLL evolves an MLP policy for Gymnasium's CartPole-v1, one environment per member.

What it shows:

- a policy MLP 4 → --hidden → 2 (`egg.models.MLP`); the action is the argmax of its two logits (0 pushes
  the cart left, 1 right), so a return depends only on the parameters and the initial state;
- Gymnasium's vectorized CartPole (`gymnasium.make_vec`): N environments stepped together by one array of
  N actions, environment i played by member i;
- the actions of the whole population from ONE batched forward pass per step,
  `model.apply(pop, obs, shared=False)`: obs (N, 4) holds one observation per member, row i for member i;
- the fitness of member i, the return of its episode (1 point per step the pole stays up, at most
  --max-steps = 500), handed to `tell` as an (N,) NumPy array;
- the evaluation of the mean parameters (`egg.MeanOps(state.params)`, the same model code) on
  --eval-episodes episodes from a fixed seed that no training generation uses.

Run it from the repository root (under 10 s on a 2-core CPU with the defaults):

    .venv/bin/python examples/cartpole.py
    .venv/bin/python examples/cartpole.py --generations 60 --population 64 --seed 1

It prints every --eval-every generations the population's mean and best return and the mean return of the
mean parameters over the evaluation episodes; at the end the final mean return (500.0 is the maximum: the
policy balances the pole for all 500 steps of every evaluation episode; the defaults reach it).
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np

import eggroll_np as egg

EVAL_SEED = 2**31 - 1  # the evaluation's reset seed; training seeds come from --seed


def make_envs(num_envs: int, max_steps: int):
    """`num_envs` CartPole-v1 environments stepped together, each truncated after `max_steps` steps."""
    return gymnasium.make_vec(
        "CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point", max_episode_steps=max_steps
    )


def episode_returns(envs, policy, seed: int) -> np.ndarray:
    """The return of every environment's first episode after `envs.reset(seed=seed)`, shape (num_envs,).

    policy maps observations (num_envs, 4) to actions (num_envs,). A vector env resets an environment on
    the step after its episode ends and keeps stepping it, so rewards count only until each environment's
    first termination or truncation, and the loop stops once every episode has ended.
    """
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(envs.num_envs)
    done = np.zeros(envs.num_envs, dtype=bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
    return returns


def greedy_policy(model, ops, shared: bool = True):
    """obs (n, 4) → actions (n,): argmax of the logits of `ops`, a population (one row per member, so
    shared=False) or `egg.MeanOps` (the mean parameters on every row)."""

    def act(obs):
        logits = model.apply(ops, obs.astype(np.float32), shared=shared)  # (n, 2)
        return np.argmax(logits, axis=-1)

    return act


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="EGGROLL evolves an MLP policy for CartPole-v1.")
    parser.add_argument("--generations", type=int, default=40, help="generations (default 40)")
    parser.add_argument("--population", type=int, default=128, help="population size N, even (default 128)")
    parser.add_argument("--sigma", type=float, default=0.2, help="perturbation scale σ (default 0.2)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate of Adam (default 0.1)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units of the policy (default 16)")
    parser.add_argument("--max-steps", type=int, default=500, help="steps after which an episode ends (default 500)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation (default 20)")
    parser.add_argument("--eval-every", type=int, default=5, help="generations between evaluations (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, the noise and the resets")
    args = parser.parse_args(argv)

    model = egg.models.MLP((4, args.hidden, 2), activation="tanh")
    params = model.init(np, seed=args.seed)
    # Zero output weights: the mean policy starts with tied logits, and every member's first moves come from
    # its own perturbation instead of one random preference that all members would inherit.
    params["layers.1.w"] = np.zeros_like(params["layers.1.w"])

    es = egg.EGGROLL(
        population_size=args.population,
        sigma=args.sigma,
        rank=1,
        optimizer=egg.optim.adam(args.lr),
        shaping="centered_rank",
        seed=args.seed,
    )
    state = es.init(params)
    train_envs = make_envs(args.population, args.max_steps)  # environment i for member i
    eval_envs = make_envs(args.eval_episodes, args.max_steps)
    reset_seeds = np.random.default_rng(args.seed)  # one reset seed per generation

    def evaluate(params) -> np.ndarray:
        return episode_returns(eval_envs, greedy_policy(model, egg.MeanOps(params)), EVAL_SEED)

    print(
        f"CartPole-v1, policy MLP {model.sizes}: N={es.population_size}, sigma={args.sigma}, rank={es.rank}, "
        f"adam({args.lr}), {args.generations} generations"
    )
    start = time.perf_counter()
    for generation in range(1, args.generations + 1):
        pop = es.ask(state)
        seed = int(reset_seeds.integers(2**31 - 1))
        returns = episode_returns(train_envs, greedy_policy(model, pop, shared=False), seed)  # (N,)
        state, info = es.tell(state, pop, returns)

        if generation % args.eval_every == 0 or generation == args.generations:
            evaluation = evaluate(state.params)
            print(
                f"generation {generation:3d}: population return mean {float(info['fitness_mean']):5.1f} "
                f"best {float(info['fitness_max']):5.1f}; mean params over {args.eval_episodes} episodes: "
                f"{evaluation.mean():5.1f} (min {evaluation.min():5.1f}), {time.perf_counter() - start:.1f} s"
            )

    final = float(evaluate(state.params).mean())
    print(f"final mean return of the mean parameters over {args.eval_episodes} episodes: {final:.1f} (max 500)")
    train_envs.close()
    eval_envs.close()
    return final


if __name__ == "__main__":
    main()
