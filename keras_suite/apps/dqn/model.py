"""Q-networks: the Nature-DQN CNN for stacked 84x84 frames, an MLP for vector
observations, each with an optional dueling head (Wang et al. 2016)."""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402


@keras.saving.register_keras_serializable(package="ksuite_dqn")
class ScaleFrames(layers.Layer):
    """uint8 pixels -> float in [0, 1] inside the model, so that serving and replay keep
    uint8 (4x smaller) and the conversion is part of the exported graph."""

    def call(self, frames):
        return keras.ops.cast(frames, self.compute_dtype) / 255.0

    def stock_call(self, frames):
        """The same Keras ops applied to the symbolic input: a .keras file holds them as
        stock operations (common/keras_files.py)."""
        return self.call(frames)


@keras.saving.register_keras_serializable(package="ksuite_dqn")
class DuelingQ(layers.Layer):
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a): the mean keeps V and A identifiable."""

    def call(self, value, advantage):
        return value + advantage - keras.ops.mean(advantage, axis=-1, keepdims=True)

    def stock_call(self, value, advantage):
        """The same Keras ops applied to the symbolic inputs: a .keras file holds them as
        stock operations (common/keras_files.py)."""
        return self.call(value, advantage)


def build_q_network(agent_cfg, obs_shape, obs_dtype: str, num_actions: int, name: str):
    num_actions = int(num_actions)
    input_name = "frames" if agent_cfg.network == "nature_cnn" else "observation"
    inputs = keras.Input(tuple(obs_shape), dtype=obs_dtype, name=input_name)
    hidden = list(agent_cfg.hidden_units) or [512]
    if agent_cfg.network == "nature_cnn":
        x = ScaleFrames(name="scale")(inputs)
        x = layers.Conv2D(32, 8, strides=4, activation="relu", name="conv1")(x)
        x = layers.Conv2D(64, 4, strides=2, activation="relu", name="conv2")(x)
        x = layers.Conv2D(64, 3, strides=1, activation="relu", name="conv3")(x)
        x = layers.Flatten(name="flatten")(x)
    else:
        x = layers.Rescaling(1.0, name="as_float")(inputs)
    # All hidden layers but the last are shared; the last one is per stream when dueling.
    for i, units in enumerate(hidden[:-1]):
        x = layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
    last = hidden[-1]
    if agent_cfg.dueling:
        v = layers.Dense(last, activation="relu", name="value_hidden")(x)
        v = layers.Dense(1, dtype="float32", name="value")(v)
        a = layers.Dense(last, activation="relu", name="advantage_hidden")(x)
        a = layers.Dense(num_actions, dtype="float32", name="advantage")(a)
        q = DuelingQ(dtype="float32", name="q_values")(v, a)
    else:
        x = layers.Dense(last, activation="relu", name=f"dense{len(hidden)}")(x)
        q = layers.Dense(num_actions, dtype="float32", name="q_values")(x)
    return keras.Model(inputs, q, name=name)
