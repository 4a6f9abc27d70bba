"""Double DQN within Stable-Baselines3's API: SB3's ``DQN`` with the Double-DQN target.

SB3's ``DQN.train`` takes the target network's maximum over next actions, which overestimates
values (van Hasselt, Guez and Silver, *Deep Reinforcement Learning with Double Q-learning*, 2016).
Double DQN lets the online network pick the next action and the target network value it:
``y = r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``. Guggilla et al. compress
a Double-DQN agent on LunarLander. Only the target differs; the replay buffer, exploration,
target updates, Huber loss and gradient clipping are SB3's, so ``DoubleDQN.load`` and SB3's
``predict`` behave exactly as for ``DQN``.

One more change, to the exploration schedule: SB3 anneals epsilon over ``exploration_fraction`` of
the ``total_timesteps`` of the current ``learn`` call. rlbench trains in checkpointed chunks
(:mod:`rlbench.train.loop`), so SB3's schedule would restart inside each 10k-step chunk and anneal
over a fraction of the chunk. :attr:`DoubleDQN.schedule_timesteps` (the run's budget, saved with the
agent) puts the schedule back on the whole run, as one ``learn`` call over the budget would have it.
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3 import DQN
from torch.nn import functional as F


class DoubleDQN(DQN):
    """SB3 ``DQN`` whose TD target uses the online network's argmax (Double DQN)."""

    #: The registry's name for it: what ``meta.json`` and ``agent.pt`` record.
    rlbench_algo = "DQN"
    #: The run's budget in steps; epsilon anneals over ``exploration_fraction`` of it (None: SB3's
    #: per-``learn`` schedule).
    schedule_timesteps: int | None = None

    def _on_step(self) -> None:
        super()._on_step()
        if self.schedule_timesteps:
            remaining = max(0.0, 1.0 - self.num_timesteps / float(self.schedule_timesteps))
            self.exploration_rate = self.exploration_schedule(remaining)
            self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            with th.no_grad():
                next_actions = self.q_net(data.next_observations).argmax(dim=1, keepdim=True)
                next_q = th.gather(self.q_net_target(data.next_observations), dim=1, index=next_actions)
                target = data.rewards + (1 - data.dones) * discounts * next_q
            current = th.gather(self.q_net(data.observations), dim=1, index=data.actions.long())
            loss = F.smooth_l1_loss(current, target)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)) if losses else float("nan"))
