"""DQN on Atari and classic control: `APP` is what the Keras Suite pipeline calls.

See docs/dqn.md. The modules, in reading order: config, wrappers, data (the
environments), replay, model (Q-networks), learner, train, evaluation, app (the contract),
commands (`ksuite play dqn`), bench (`ksuite bench dqn`).
"""


def __getattr__(name):
    # Built on first use: `ksuite --help` imports keras_suite.apps.dqn.commands without TensorFlow.
    if name == "APP":
        from keras_suite.apps.dqn.app import DQNApp

        globals()["APP"] = DQNApp()
        return globals()["APP"]
    raise AttributeError(name)
