"""Fine-tuning a keras-hub backbone: the preset's own image converter, and a frozen-then-
unfrozen schedule (`train.freeze_backbone_epochs`, `train.finetune_lr_scale`).

The keras-io recipe, inside the shared `strategy.run` loop:

- the preset's `ImageConverter` turns 0..255 pixels into what the backbone was trained
  on (its scale and offset: ImageNet mean and std for ResNet), inside the model, so
  serving clients still send plain pixels;
- for the first N epochs only the head learns: the backbone's gradients are zeroed in the
  step (one traced step for both phases; Adam moves a variable only when it has had a
  gradient, and the backbone is left out of weight decay, so its weights stay exactly as
  loaded);
- from epoch N+1 everything learns at `finetune_lr_scale` times the learning rate, ramped
  up over the first epoch of the phase (Adam's moments of the backbone start from zero
  there, and a ramp keeps its first steps small);
- the backbone's batch norm layers are frozen in both phases (inference mode: the moving
  statistics and scales stay the pretrained ones; a small fine-tuning batch would
  overwrite them).

A backbone is named `hub:<preset>`: a keras-hub preset name (downloaded on first use,
with `model.pretrained=true` for its weights) or a local preset folder. docs/ecosystem.md
has the commands and the download story.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.common.finetune_config import FinetuneTrainConfig  # noqa: F401

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

BACKBONE_LAYER = "backbone"  # the name of the keras-hub backbone inside an app's model


def preset_name(arch: str) -> str:
    return arch.removeprefix("hub:")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def load_backbone(arch: str, pretrained: bool):
    """The keras-hub backbone of `hub:<preset>`, with its weights when `pretrained` (a
    download on first use), else built from the preset's config with random weights."""
    import keras_hub

    preset = preset_name(arch)
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=pretrained)
    except Exception as exc:  # unknown preset, no network, a folder without config.json
        raise UserError(
            f"could not load keras-hub preset {preset!r} ({_first_line(exc)}); name a preset "
            "keras_hub lists (e.g. resnet_18_imagenet, downloaded on first use into the "
            "Kaggle cache) or a local preset folder"
        ) from None
    backbone.name = BACKBONE_LAYER
    return backbone


def image_converter(arch: str):
    """The preset's ImageConverter with its scale and offset, resizing left out (the
    data pipeline already gives data.image_size), or None when the preset has none."""
    import keras_hub

    try:
        return keras_hub.layers.ImageConverter.from_preset(
            preset_name(arch), image_size=None, name="image_converter"
        )
    except Exception:  # a preset without an image converter (a bare backbone)
        return None


def preprocess(x, arch: str):
    """0..255 pixels -> what the backbone takes: the preset's converter (keras-hub
    converters take 0..255 pixels), or plain Rescaling(1/255) without one."""
    converter = image_converter(arch) if arch.startswith("hub:") else None
    if converter is None:
        return keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    return converter(x)


def freeze_batch_norm(backbone) -> None:
    """Batch norm layers of `backbone` in inference mode for good: Keras 3 runs a
    non-trainable BatchNormalization with its moving statistics, whatever `training` the
    model is called with (a `training=False` given while building a Functional model is
    not kept), and leaves its scale and offset as loaded."""
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def backbone_variables(model) -> list:
    try:
        return list(model.get_layer(BACKBONE_LAYER).trainable_variables)
    except ValueError:
        return []


class FinetuneSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`base` until `switch_step`, then `scale` x `base`, ramped linearly over `ramp_steps`."""

    def __init__(self, base, switch_step: int, scale: float, ramp_steps: int):
        self.base, self.switch_step = base, int(switch_step)
        self.scale, self.ramp_steps = float(scale), max(int(ramp_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = self.base(step) if callable(self.base) else tf.cast(self.base, tf.float32)
        into = step - self.switch_step
        ramp = tf.clip_by_value((into + 1.0) / self.ramp_steps, 0.0, 1.0)
        return tf.where(into < 0, base, base * self.scale * ramp)

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {
            "base": base,
            "switch_step": self.switch_step,
            "scale": self.scale,
            "ramp_steps": self.ramp_steps,
        }


def finetune_optimizer(train_cfg, total_steps: int, steps_per_epoch: int, model):
    """The run's optimizer; with freeze_backbone_epochs, its learning rate drops to
    finetune_lr_scale x at the unfreezing step and the backbone gets no weight decay."""
    from keras_suite.common.training import make_optimizer

    n = getattr(train_cfg, "freeze_backbone_epochs", 0)
    if not n or not backbone_variables(model):
        return make_optimizer(train_cfg, total_steps)
    switch = n * steps_per_epoch
    optimizer = make_optimizer(
        train_cfg,
        total_steps,
        wrap_schedule=lambda s: FinetuneSchedule(
            s, switch, train_cfg.finetune_lr_scale, steps_per_epoch
        ),
    )
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.exclude_from_weight_decay(var_list=backbone_variables(model))
    return optimizer


def apply_finetune_gradients(tape, loss, model, optimizer, step, clip_norm: float = 0.0):
    """`training.apply_gradients` for a model with a keras-hub backbone: while the epoch is
    below train.freeze_backbone_epochs the backbone's gradients are zero."""
    variables = model.trainable_variables
    scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
    grads = tape.gradient(scaled, variables)
    frozen_epochs = getattr(step.cfg.train, "freeze_backbone_epochs", 0)
    if frozen_epochs:
        in_backbone = {id(v) for v in backbone_variables(model)}
        learning = tf.cast(tf.cast(step.epoch, tf.int64) >= frozen_epochs, tf.float32)
        grads = [
            g * tf.cast(learning, g.dtype) if g is not None and id(v) in in_backbone else g
            for g, v in zip(grads, variables)
        ]
    if clip_norm and clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    optimizer.apply_gradients(zip(grads, variables))
    return grads
