"""DQN on Atari and classic control: `APP` is what the Keras Suite pipeline calls.

See docs/dqn.md. The modules, in reading order: config, wrappers, envs, replay,
networks, learner, train, evaluation, app (the contract), cli (`ksuite play dqn`),
bench (`ksuite bench dqn`).
"""
from apps.dqn.app import DQNApp

APP = DQNApp()
