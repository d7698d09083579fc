"""PPO agents on MiniGrid-Empty (thesis §3.5, Figures 3.6–3.8): networks, training, rollouts.
Environment, networks and PPO (Schulman et al. 2017): docs/papers.md, MiniGrid. With the same seed
and thread count a run is bitwise reproducible on one machine.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from layersim.errors import LayersimError
from layersim.io import atomic_write
from layersim.metrics.functional import softmax

log = logging.getLogger("layersim")

ARCHS = ("original", "bottleneck")
GRID_SIZES = (5, 6, 8, 16)  # the MiniGrid-Empty-<n>x<n>-v0 environments minigrid registers
N_ACTIONS = 7  # MiniGrid's action set (left, right, forward, pickup, drop, toggle, done)
VIEW = (7, 7, 3)  # the partial view ImgObsWrapper returns
PPO_DEFAULTS = {
    "frames": 40000, "n_envs": 8, "steps": 64, "epochs": 4, "minibatch": 128, "lr": 0.001,
    "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.2, "entropy_coef": 0.01, "value_coef": 0.5,
    "max_grad_norm": 0.5,
}


class AgentNet(nn.Module):
    """Actor–critic network of one agent, ``original`` or ``bottleneck`` (thesis Figure 3.7; the
    layers: docs/papers.md, MiniGrid)."""

    def __init__(self, arch: str, bottleneck: int = 8, n_actions: int = N_ACTIONS):
        super().__init__()
        if arch not in ARCHS:
            raise LayersimError(f"agent architecture {arch!r} is unknown; use one of {', '.join(ARCHS)}")
        if not (isinstance(bottleneck, int) and bottleneck >= 1):
            raise LayersimError(f"the bottleneck width must be a positive integer; got {bottleneck!r}")
        self.arch, self.bottleneck_width = arch, bottleneck
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 16, 2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 2), nn.ReLU(),
            nn.Conv2d(32, 64, 2), nn.ReLU(),
            nn.Flatten(),
        )
        if arch == "original":
            self.pre_actor = nn.Identity()
            self.actor = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n_actions))
        else:
            self.pre_actor = nn.Sequential(nn.Linear(64, bottleneck), nn.Tanh())
            self.actor = nn.Linear(bottleneck, n_actions)
        self.critic = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, obs):
        """``obs (n, 7, 7, 3)`` → action logits ``(n, 7)``, values ``(n,)``, CKA features ``(n, d)``."""
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != VIEW:
            raise LayersimError(f"agent observations must be (n, 7, 7, 3) MiniGrid views; got shape {tuple(x.shape)}")
        trunk = self.trunk(x.permute(0, 3, 1, 2))
        feats = self.pre_actor(trunk)
        return self.actor(feats), self.critic(trunk).squeeze(1), feats


def make_env(size: int):
    """MiniGrid-Empty-<size>x<size>-v0 with ``ImgObsWrapper`` (start, goal, rewards and episode
    length: docs/papers.md, MiniGrid)."""
    import gymnasium
    import minigrid  # noqa: F401 (registers the MiniGrid environments)
    from minigrid.wrappers import ImgObsWrapper

    if size not in GRID_SIZES:
        raise LayersimError(f"MiniGrid grid size {size!r} has no Empty environment; use one of {', '.join(map(str, GRID_SIZES))}")
    return ImgObsWrapper(gymnasium.make(f"MiniGrid-Empty-{size}x{size}-v0", disable_env_checker=True))


def ppo_settings(settings: dict | None) -> dict:
    """PPO settings: the defaults overridden by ``settings`` (unknown keys are an error)."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(PPO_DEFAULTS))
    if unknown:
        raise LayersimError(f"unknown PPO setting(s) {', '.join(unknown)}; known: {', '.join(PPO_DEFAULTS)}")
    out = {**PPO_DEFAULTS, **settings}
    if (out["n_envs"] * out["steps"]) % out["minibatch"]:
        raise LayersimError(f"PPO n_envs·steps ({out['n_envs']}·{out['steps']}) must be a multiple of minibatch ({out['minibatch']})")
    return out


def train_agent(arch: str, size: int, seed: int, settings: dict | None = None, *, bottleneck: int = 8) -> tuple[AgentNet, list[dict]]:
    """Train one agent with PPO on Empty-<size>; returns the network and one log row per update
    (frames so far, episodes finished, their mean return, the losses)."""
    cfg = ppo_settings(settings)
    torch.manual_seed(seed)
    net = AgentNet(arch, bottleneck)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg["lr"], eps=1e-8)
    n_envs, steps = cfg["n_envs"], cfg["steps"]
    envs = [make_env(size) for _ in range(n_envs)]
    obs = np.stack([env.reset(seed=seed * 1000 + i)[0] for i, env in enumerate(envs)])
    episode_return = np.zeros(n_envs)
    updates = max(1, math.ceil(cfg["frames"] / (n_envs * steps)))
    history = []
    for update in range(updates):
        batch_obs = np.zeros((steps, n_envs, *VIEW), np.uint8)
        actions = torch.zeros(steps, n_envs, dtype=torch.long)
        logprobs, values = torch.zeros(steps, n_envs), torch.zeros(steps + 1, n_envs)
        rewards, dones = torch.zeros(steps, n_envs), torch.zeros(steps, n_envs)
        finished = []
        for t in range(steps):
            with torch.no_grad():
                logits, value, _ = net(obs)
            logp = torch.log_softmax(logits, 1)
            action = torch.multinomial(logp.exp(), 1).squeeze(1)
            batch_obs[t], actions[t], values[t] = obs, action, value
            logprobs[t] = logp.gather(1, action[:, None]).squeeze(1)
            for i, env in enumerate(envs):
                o, r, terminated, truncated, _ = env.step(int(action[i]))
                rewards[t, i] = r
                episode_return[i] += r
                if terminated or truncated:
                    dones[t, i] = 1.0
                    finished.append(episode_return[i])
                    episode_return[i] = 0.0
                    o, _ = env.reset()
                obs[i] = o
        with torch.no_grad():
            values[steps] = net(obs)[1]
        advantages = _gae(rewards, values, dones, cfg["gamma"], cfg["gae_lambda"])
        returns = advantages + values[:steps]
        losses = _ppo_update(net, optimiser, cfg, batch_obs.reshape(-1, *VIEW), actions.reshape(-1), logprobs.reshape(-1), advantages.reshape(-1), returns.reshape(-1))
        history.append({
            "update": update + 1, "frames": (update + 1) * n_envs * steps, "episodes": len(finished),
            "mean_return": float(np.mean(finished)) if finished else None, **losses,
        })
        if (update + 1) % 10 == 0 or update + 1 == updates:
            log.info("update %d/%d frames %d: %d episodes, mean return %s, entropy %.3f", update + 1, updates, history[-1]["frames"], len(finished), f"{np.mean(finished):.3f}" if finished else "-", losses["entropy"])
    for env in envs:
        env.close()
    return net, history


def _gae(rewards, values, dones, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al. 2016), backwards over the steps; an
    episode's end (``dones[t] = 1``) cuts the bootstrap."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        keep = 1.0 - dones[t]
        delta = rewards[t] + gamma * values[t + 1] * keep - values[t]
        running = delta + gamma * lam * keep * running
        advantages[t] = running
    return advantages


def _ppo_update(net, optimiser, cfg, obs, actions, old_logprobs, advantages, returns) -> dict:
    """``epochs`` passes of shuffled minibatches over the clipped PPO objective."""
    n = len(actions)
    losses = []  # per minibatch: policy loss, value loss, entropy
    for _ in range(cfg["epochs"]):
        for idx in torch.randperm(n).split(cfg["minibatch"]):
            logits, value, _ = net(obs[idx.numpy()])
            logp = torch.log_softmax(logits, 1)
            ratio = torch.exp(logp.gather(1, actions[idx][:, None]).squeeze(1) - old_logprobs[idx])
            adv = advantages[idx]
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - cfg["clip"], 1 + cfg["clip"]) * adv).mean()
            value_loss = (value - returns[idx]).pow(2).mean()
            entropy = -(logp.exp() * logp).sum(1).mean()
            loss = policy_loss + cfg["value_coef"] * value_loss - cfg["entropy_coef"] * entropy
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg["max_grad_norm"])
            optimiser.step()
            losses.append([float(policy_loss.detach()), float(value_loss.detach()), float(entropy.detach())])
    return dict(zip(("policy_loss", "value_loss", "entropy"), np.mean(losses, axis=0).tolist()))


def run_episodes(policy, size: int, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Play ``episodes`` episodes on Empty-<size>, actions sampled from ``policy`` (an
    :class:`AgentNet`, or ``None`` for uniformly random actions) with a generator seeded by
    ``seed``. Returns every observed state ``(n, 7, 7, 3)`` uint8 and each episode's return."""
    if episodes < 1:
        raise LayersimError(f"episodes must be at least 1; got {episodes}")
    gen = torch.Generator().manual_seed(seed)
    env = make_env(size)
    states, returns = [], []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + e)
        total, done = 0.0, False
        while not done:
            states.append(obs)
            if policy is None:
                action = int(torch.randint(N_ACTIONS, (1,), generator=gen))
            else:
                with torch.no_grad():
                    probs = torch.softmax(policy(obs[None])[0][0].double(), 0)
                action = int(torch.multinomial(probs, 1, generator=gen))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.stack(states).astype(np.uint8), np.asarray(returns)


def category(mean_return: float, optimal: float = 0.8, poor: float = 0.2) -> str:
    """The thesis' class of an agent by its mean return on its training grid (docs/papers.md)."""
    if not math.isfinite(mean_return):
        raise LayersimError(f"an agent's mean return is {mean_return}; it must be a finite number")
    return "optimal" if mean_return > optimal else "poor" if mean_return < poor else "mediocre"


def pair_colour_group(cat_a: str, cat_b: str) -> str:
    """The thesis' colour of a pair: both optimal, optimal vs mediocre, optimal vs poor, other."""
    return {
        ("optimal", "optimal"): "both optimal",
        ("mediocre", "optimal"): "optimal vs mediocre",
        ("optimal", "poor"): "optimal vs poor",
    }.get(tuple(sorted((cat_a, cat_b))), "other")


def save_agent(net: AgentNet, path) -> None:
    """Checkpoint (``torch.load(path, weights_only=True)``): arch, bottleneck width, weights."""
    atomic_write(path, lambda tmp: torch.save({"arch": net.arch, "bottleneck": net.bottleneck_width, "state_dict": net.state_dict()}, tmp))


def load_agent(path) -> AgentNet:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net = AgentNet(ckpt["arch"], ckpt["bottleneck"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def policy_outputs(net: AgentNet, states) -> tuple[np.ndarray, np.ndarray]:
    """CKA features ``(n, d)`` float32 and action probabilities ``(n, 7)`` float64 on ``states``."""
    with torch.no_grad():
        logits, _, feats = net(states)
    return feats.numpy(), softmax(logits.numpy())
