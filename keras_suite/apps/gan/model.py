"""Generators and discriminators.

DCGAN (Radford et al. 2015): strided convolutions instead of pooling, fractionally-strided
(transposed) convolutions to upsample, batch norm in the generator and (by default) the
discriminator but not on the generator output or the discriminator input, ReLU in the
generator with tanh out, LeakyReLU(0.2) in the discriminator, weights from N(0, 0.02).

StyleGAN-lite (after Karras et al. 2019/2020, StyleGAN2): mapping network z -> w,
a learned 4x4 constant, modulated 3x3 convolutions with demodulation, per-layer noise
with learned strength, the truncation trick on w, and the *skip* generator: every
resolution adds its own RGB output (upsampled and summed). Skip outputs instead of
progressive growing: they give the same coarse-to-fine learning (StyleGAN2 section 4.1)
with one fixed graph, so there is no growth schedule or fade-in state to checkpoint and
resume, and one graph to export and convert to TFLite at a fixed shape. Its discriminator
is StyleGAN2's residual one. Both use equalized learning rate (weights N(0, 1) scaled by
He's constant at run time), which keeps Adam's effective step the same for every layer.

Every generator takes (z, class_ids, truncation, noise_seed) and returns images in
[-1, 1]. `noise_seed` (a stateless-RNG seed) draws fresh per-layer noise in training;
without it the generator uses fixed noise buffers stored with its weights, so serving
and TFLite are deterministic functions of the seed.
"""

from __future__ import annotations

import math

from keras_suite import common
from keras_suite.common.batchnorm import FusedBatchNormalization
from keras_suite.common.keras_files import InputSpec, LayerCopies
from keras_suite.common.training import sync_batch_norm

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402


def dcgan_init():
    """N(0, 0.02) (Radford et al.). A fresh initializer per layer: a shared module-level one
    would take its seed at import time, before the run seeds Keras, and make two runs of
    the same config start from different weights."""
    return keras.initializers.RandomNormal(0.0, 0.02)


LRELU_GAIN = math.sqrt(2.0)


class _Layers:
    """Layers kept as named attributes of their model, iterated in order.

    tf.train.Checkpoint (the training checkpoints) only follows layers held in direct
    attributes of a Keras 3 model: layers in a list attribute are left out (their
    trainable weights come back only through the optimizer's references, non-trainable
    ones — batch-norm statistics, noise buffers, and every weight of the EMA generator —
    not at all). tests/test_gan_train.py checks a restore against the trained state."""

    def __init__(self, owner, prefix):
        self.owner, self.prefix, self.count = owner, prefix, 0

    def add(self, layer):
        setattr(self.owner, f"{self.prefix}_{self.count}", layer)
        self.count += 1
        return layer

    def __iter__(self):
        return (getattr(self.owner, f"{self.prefix}_{i}") for i in range(self.count))

    def __getitem__(self, i):
        return getattr(self.owner, f"{self.prefix}_{range(self.count)[i]}")

    def __len__(self):
        return self.count


def normalize_2nd_moment(x, eps=1e-8):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + eps)


class _NoDefaultSignature:
    """Keras 3 gives every subclassed model a default SavedModel signature that calls it with
    its first input only; a conditional generator needs class_ids too, so that trace fails
    when the export (which defines its own signatures) is written."""

    @property
    def _default_save_signature(self):
        return None


class _GeneratorKerasFile:
    """What common/keras_files.py needs to write RUN_DIR/generator_ema.keras: the inputs
    (z, truncation per example, class ids when conditional), the call on them (fixed noise
    buffers, as served), and the weights built when Keras loads the file."""

    def keras_file_inputs(self) -> dict:
        specs = {
            "z": InputSpec("z", (self.latent_dim,), "float32", -2.0, 2.0),
            "truncation": InputSpec("truncation", (), "float32", 0.5, 1.0),
        }
        if self.num_classes:
            specs["class_ids"] = InputSpec("class_ids", (), "int64", 0, self.num_classes)
        return specs

    def keras_file_call(self, inputs):
        return self(inputs["z"], inputs.get("class_ids"), inputs["truncation"], training=False)

    def build_from_config(self, config):
        classes = tf.zeros([2], tf.int64) if self.num_classes else None
        self(tf.zeros([2, self.latent_dim]), classes, tf.ones([2]))


# ---- DCGAN ------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="keras_suite.gan")
class DCGANGenerator(_GeneratorKerasFile, _NoDefaultSignature, keras.Model):
    def __init__(
        self, latent_dim, image_size, channels=256, num_classes=0, upsample="resize", **kw
    ):
        super().__init__(**kw)
        self.latent_dim, self.image_size, self.num_classes = latent_dim, image_size, num_classes
        self.upsample = upsample
        self.channels = channels
        self.embed = (
            layers.Embedding(
                num_classes, latent_dim, embeddings_initializer=dcgan_init(), name="class_embed"
            )
            if num_classes
            else None
        )
        self.project = layers.Dense(
            4 * 4 * channels, use_bias=False, kernel_initializer=dcgan_init(), name="project"
        )
        self.reshape = layers.Reshape((4, 4, channels))
        self.ups, self.bns = _Layers(self, "up"), _Layers(self, "bn")
        res, ch = 4, channels
        while res < image_size // 2:
            ch = max(32, ch // 2)
            self.ups.add(self._up_conv(ch, f"up{res * 2}", use_bias=False))
            self.bns.add(
                FusedBatchNormalization(
                    momentum=0.9, synchronized=sync_batch_norm(), name=f"bn{res * 2}"
                )
            )
            res *= 2
        self.bn0 = FusedBatchNormalization(momentum=0.9, synchronized=sync_batch_norm(), name="bn4")
        self.to_rgb = self._up_conv(3, "to_rgb", use_bias=True)

    def _up_conv(self, filters, name, use_bias):
        """x2 upsampling: a fractionally-strided 4x4 conv (Radford et al.), or nearest-neighbour
        resize + 3x3 conv (Odena et al. 2016). The transposed conv gives every border pixel
        one tap per axis instead of two, so the image edges come out at about half strength
        (a grey frame a discriminator spots at once: measured here, D loss -> 0.02 in 200
        steps on 32x32 shapes); resize-conv has no such edge and no checkerboard."""
        if self.upsample == "transposed":
            return layers.Conv2DTranspose(
                filters,
                4,
                2,
                padding="same",
                use_bias=use_bias,
                kernel_initializer=dcgan_init(),
                name=name,
            )
        return keras.Sequential(
            [
                layers.UpSampling2D(2, interpolation="nearest"),
                layers.Conv2D(
                    filters,
                    3,
                    padding="same",
                    use_bias=use_bias,
                    kernel_initializer=dcgan_init(),
                    name=f"{name}_conv",
                ),
            ],
            name=name,
        )

    def call(self, z, class_ids=None, truncation=None, noise_seed=None, training=False):
        if truncation is not None:  # the truncation trick in z space: shrink towards the mean (0)
            z = z * tf.reshape(tf.cast(truncation, z.dtype), [-1, 1])
        if self.embed is not None:
            z = tf.concat([z, self.embed(class_ids)], -1)
        x = tf.nn.relu(self.bn0(self.reshape(self.project(z)), training=training))
        for up, bn in zip(self.ups, self.bns):
            x = tf.nn.relu(bn(up(x), training=training))
        return tf.tanh(self.to_rgb(x))

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "upsample": self.upsample,
        }

    def stock_model(self) -> keras.Model:
        """`call` without noise_seed (a DCGAN has no noise) as a Functional model of stock
        layers with these weights: a portable .keras file."""
        copies = LayerCopies()
        specs = self.keras_file_inputs()
        inputs = {name: spec.symbolic() for name, spec in specs.items()}
        # Keras casts a model's float inputs to its compute dtype before `call`; so does this
        z, truncation = (keras.ops.cast(inputs[k], self.compute_dtype) for k in ("z", "truncation"))
        z = z * keras.ops.expand_dims(truncation, -1)
        if self.embed is not None:
            z = layers.Concatenate()([z, copies(self.embed)(inputs["class_ids"])])
        x = copies(self.reshape)(copies(self.project)(z))
        x = layers.ReLU()(copies(self.bn0)(x))
        for up, bn in zip(self.ups, self.bns):
            x = layers.ReLU()(copies(bn)(copies(up)(x)))
        images = layers.Activation("tanh")(copies(self.to_rgb)(x))
        model = keras.Model(inputs, images, name=self.name)
        copies.copy_weights()
        return model


class MinibatchStddev(layers.Layer):
    """Karras et al. 2018 (ProGAN; kept in StyleGAN/StyleGAN2): the standard deviation of
    each feature over a group of images, averaged to one number per group and appended as
    a constant channel. A generator that gives every z the same image has a group spread
    of ~0, which the discriminator can then see: the remedy for mode collapse in the
    discriminator itself. Groups are contiguous (images 0-3, 4-7, ...) so a replica's
    slice of the global batch holds whole groups and a mirrored step equals the
    single-device one; a batch that `group_size` does not divide is one group."""

    def __init__(self, group_size=4, **kw):
        super().__init__(**kw)
        self.group_size = group_size

    def call(self, x):
        n = tf.shape(x)[0]
        g = tf.where(n % self.group_size == 0, self.group_size, n)
        groups = tf.reshape(x, tf.concat([[-1, g], tf.shape(x)[1:]], 0))  # [n/g, g, h, w, c]
        var = tf.reduce_mean(tf.square(groups - tf.reduce_mean(groups, 1, keepdims=True)), 1)
        spread = tf.reduce_mean(tf.sqrt(var + 1e-8), [1, 2, 3])  # [n/g]
        feature = tf.repeat(spread, g)[:, None, None, None] * tf.ones_like(x[..., :1])
        return tf.concat([x, feature], -1)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


def _d_norm(kind, name):
    if kind == "batch":
        return FusedBatchNormalization(momentum=0.9, synchronized=sync_batch_norm(), name=name)
    if kind == "layer":
        return layers.LayerNormalization(axis=[1, 2, 3], name=name)
    return None


class DCGANDiscriminator(keras.Model):
    """Strided convs down to 4x4, then a linear logit; with classes, a projection
    discriminator (Miyato & Koyama 2018): logit += <embed(y), features>."""

    def __init__(self, image_size, channels=64, num_classes=0, norm="batch", mbstd_group=0, **kw):
        super().__init__(**kw)
        # minibatch stddev (0 = off) goes in before the last strided conv, which mixes it in
        self.mbstd = MinibatchStddev(mbstd_group, name="mbstd") if mbstd_group else None
        # norms[i] follows convs[i + 1] (none after the input conv)
        self.convs, self.norms = _Layers(self, "conv"), _Layers(self, "norm")
        res, ch = image_size, channels
        while res > 4:
            first = not len(self.convs)
            self.convs.add(
                layers.Conv2D(
                    ch,
                    4,
                    2,
                    padding="same",
                    use_bias=first or norm == "none",
                    kernel_initializer=dcgan_init(),
                    name=f"down{res // 2}",
                )
            )
            if not first and norm != "none":
                self.norms.add(_d_norm(norm, f"norm{res // 2}"))
            res, ch = res // 2, min(512, ch * 2)
        self.flatten = layers.Flatten()
        self.logit = layers.Dense(1, kernel_initializer=dcgan_init(), name="logit")
        self.embed = (
            layers.Embedding(
                num_classes,
                4 * 4 * (ch // 2),
                embeddings_initializer=dcgan_init(),
                name="class_embed",
            )
            if num_classes
            else None
        )

    def call(self, images, class_ids=None, training=False):
        x = images
        for i, conv in enumerate(self.convs):
            if self.mbstd is not None and i == len(self.convs) - 1:
                x = self.mbstd(x)
            x = conv(x)
            if i > 0 and len(self.norms):
                norm = self.norms[i - 1]
                x = (
                    norm(x, training=training)
                    if isinstance(norm, keras.layers.BatchNormalization)
                    else norm(x)
                )
            x = tf.nn.leaky_relu(x, 0.2)
        h = self.flatten(x)
        out = self.logit(h)[:, 0]
        if self.embed is not None:
            out = out + tf.reduce_sum(self.embed(class_ids) * h, -1)
        return out


# ---- equalized-learning-rate layers ----------------------------------------------------
class EqDense(layers.Layer):
    def __init__(self, units, bias_init=0.0, lr_mul=1.0, activation=None, **kw):
        super().__init__(**kw)
        self.units, self.bias_init, self.lr_mul, self.activation = (
            units,
            bias_init,
            lr_mul,
            activation,
        )

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.scale = self.lr_mul / math.sqrt(fan_in)
        self.kernel = self.add_weight(
            shape=(fan_in, self.units),
            initializer=keras.initializers.RandomNormal(0.0, 1.0 / self.lr_mul),
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.units,),
            initializer=keras.initializers.Constant(self.bias_init / self.lr_mul),
            name="bias",
        )

    def call(self, x):
        y = tf.matmul(x, self.kernel * self.scale) + self.bias * self.lr_mul
        return tf.nn.leaky_relu(y, 0.2) * LRELU_GAIN if self.activation == "lrelu" else y


class EqConv2D(layers.Layer):
    def __init__(self, filters, kernel=3, activation="lrelu", use_bias=True, **kw):
        super().__init__(**kw)
        self.filters, self.k, self.activation, self.use_bias = filters, kernel, activation, use_bias

    def build(self, input_shape):
        fan_in = int(input_shape[-1]) * self.k * self.k
        self.scale = 1.0 / math.sqrt(fan_in)
        self.kernel = self.add_weight(
            shape=(self.k, self.k, int(input_shape[-1]), self.filters),
            initializer=keras.initializers.RandomNormal(0.0, 1.0),
            name="kernel",
        )
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def call(self, x):
        y = tf.nn.conv2d(x, self.kernel * self.scale, 1, "SAME")
        if self.bias is not None:
            y = y + self.bias
        return tf.nn.leaky_relu(y, 0.2) * LRELU_GAIN if self.activation == "lrelu" else y


# ---- StyleGAN-lite ----------------------------------------------------------------------
class ModulatedConv(layers.Layer):
    """A 3x3 (or 1x1) convolution whose input channels are scaled by a per-example style
    s = A(w), followed by demodulation (each output channel rescaled to unit expected
    variance). Written as x*s -> conv -> *d, which is exactly StyleGAN2's weight
    modulation but needs only a standard conv (fast on CPU, builtin in TFLite)."""

    def __init__(
        self, filters, kernel=3, demodulate=True, noise=True, resolution=4, activation="lrelu", **kw
    ):
        super().__init__(**kw)
        self.filters, self.k, self.demodulate = filters, kernel, demodulate
        self.use_noise, self.resolution, self.activation = noise, resolution, activation

    def build(self, input_shape):
        in_ch = int(input_shape[-1])
        self.affine = EqDense(in_ch, bias_init=1.0, name="affine")
        self.affine.build((None, self.w_dim))
        self.scale = 1.0 / math.sqrt(in_ch * self.k * self.k)
        self.kernel = self.add_weight(
            shape=(self.k, self.k, in_ch, self.filters),
            initializer=keras.initializers.RandomNormal(0.0, 1.0),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
        if self.use_noise:
            self.noise_strength = self.add_weight(
                shape=(), initializer="zeros", name="noise_strength"
            )
            self.noise_const = self.add_weight(
                shape=(1, self.resolution, self.resolution, 1),
                initializer=keras.initializers.RandomNormal(0.0, 1.0),
                trainable=False,
                name="noise_const",
            )

    def call(self, x, w, noise_seed=None):
        weight = self.kernel * self.scale
        if (
            self.k == 1
        ):  # toRGB: StyleGAN2 scales its style by 1/sqrt(fan_in) instead of demodulating
            styles = self.affine(w) * self.scale
            weight = self.kernel
        else:
            styles = self.affine(w)
        y = tf.nn.conv2d(x * styles[:, None, None, :], weight, 1, "SAME")
        if self.demodulate:
            wsq = tf.reduce_sum(tf.square(weight), axis=[0, 1])  # [in, out]
            d = tf.math.rsqrt(tf.matmul(tf.square(styles), wsq) + 1e-8)  # [B, out]
            y = y * d[:, None, None, :]
        if self.use_noise:
            if noise_seed is not None:
                shape = tf.stack([tf.shape(y)[0], self.resolution, self.resolution, 1])
                noise = tf.random.stateless_normal(shape, seed=noise_seed)
            else:
                noise = self.noise_const
            y = y + noise * self.noise_strength
        y = y + self.bias
        return tf.nn.leaky_relu(y, 0.2) * LRELU_GAIN if self.activation == "lrelu" else y


@keras.saving.register_keras_serializable(package="keras_suite.gan")
class StyleGenerator(_GeneratorKerasFile, _NoDefaultSignature, keras.Model):
    keras_file_note = (
        "StyleGAN-lite's modulated convolutions scale the kernel by per-example styles and "
        "add stored noise maps and a learned constant input; no stock layer holds those, so "
        "its file needs this package's classes"
    )

    def __init__(
        self, latent_dim, image_size, channels=128, num_classes=0, w_dim=128, mapping_layers=4, **kw
    ):
        super().__init__(**kw)
        self.latent_dim, self.image_size, self.num_classes, self.w_dim = (
            latent_dim,
            image_size,
            num_classes,
            w_dim,
        )
        self.channels, self.mapping_layers = channels, mapping_layers
        self.embed = (
            layers.Embedding(num_classes, latent_dim, name="class_embed") if num_classes else None
        )
        self.mapping_net = _Layers(self, "map")
        for i in range(mapping_layers):
            self.mapping_net.add(EqDense(w_dim, lr_mul=0.01, activation="lrelu", name=f"map{i}"))
        self.const = self.add_weight(
            shape=(1, 4, 4, channels),
            initializer=keras.initializers.RandomNormal(0, 1),
            name="const",
        )
        self.w_avg = self.add_weight(
            shape=(w_dim,), initializer="zeros", trainable=False, name="w_avg"
        )
        self.convs, self.to_rgbs = _Layers(self, "conv"), _Layers(self, "to_rgb")
        res, ch = 4, channels
        self.convs.add(self._mod(ch, 3, True, True, res, "conv4"))
        self.to_rgbs.add(self._mod(3, 1, False, False, res, "to_rgb4", activation=None))
        while res < image_size:
            res, ch = res * 2, max(32, ch // 2)
            self.convs.add(self._mod(ch, 3, True, True, res, f"conv{res}_0"))
            self.convs.add(self._mod(ch, 3, True, True, res, f"conv{res}_1"))
            self.to_rgbs.add(self._mod(3, 1, False, False, res, f"to_rgb{res}", activation=None))
        self.num_ws = len(self.convs) + 1
        self.upsample = layers.UpSampling2D(2, interpolation="bilinear")

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "w_dim": self.w_dim,
            "mapping_layers": self.mapping_layers,
        }

    def _mod(self, filters, k, demod, noise, res, name, activation="lrelu"):
        layer = ModulatedConv(filters, k, demod, noise, res, activation, name=name)
        layer.w_dim = self.w_dim
        return layer

    def mapping(self, z, class_ids=None):
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            x = tf.concat([x, normalize_2nd_moment(self.embed(class_ids))], -1)
        for layer in self.mapping_net:
            x = layer(x)
        return x

    def truncate(self, w, truncation):
        psi = tf.reshape(tf.cast(truncation, w.dtype), [-1, 1])
        return self.w_avg + psi * (w - self.w_avg)

    def synthesis(self, ws, noise_seed=None):
        """ws: [B, num_ws, w_dim] (one w per layer; style mixing gives different ones)."""

        def seed(i):
            return (
                None
                if noise_seed is None
                else noise_seed + tf.constant([1000 * (i + 1), 0], tf.int64)
            )

        x = tf.tile(self.const, [tf.shape(ws)[0], 1, 1, 1])
        x = self.convs[0](x, ws[:, 0], seed(0))
        rgb = self.to_rgbs[0](x, ws[:, 1])
        for block in range(1, len(self.to_rgbs)):
            i = 2 * block - 1
            x = self.upsample(x)
            x = self.convs[i](x, ws[:, i], seed(i))
            x = self.convs[i + 1](x, ws[:, i + 1], seed(i + 1))
            rgb = self.upsample(rgb) + self.to_rgbs[block](x, ws[:, i + 2])
        return rgb

    def call(self, z, class_ids=None, truncation=None, noise_seed=None, training=False):
        w = self.mapping(z, class_ids)
        if truncation is not None:
            w = self.truncate(w, truncation)
        ws = tf.tile(w[:, None, :], [1, self.num_ws, 1])
        return self.synthesis(ws, noise_seed)


class ResidualDiscriminator(keras.Model):
    """StyleGAN2's residual discriminator (no normalisation, equalized lr): fromRGB, then
    per resolution two 3x3 convs and a 2x average-pool with a 1x1 skip, scaled 1/sqrt(2);
    at 4x4 a conv, a dense layer and the logit (projection for classes)."""

    def __init__(self, image_size, channels=32, num_classes=0, mbstd_group=0, **kw):
        super().__init__(**kw)
        self.mbstd = (
            MinibatchStddev(mbstd_group, name="mbstd") if mbstd_group else None
        )  # before the 4x4 conv
        self.from_rgb = EqConv2D(channels, 1, name="from_rgb")
        self.conv0s, self.conv1s, self.skips = (
            _Layers(self, "conv0"),
            _Layers(self, "conv1"),
            _Layers(self, "skip"),
        )
        res, ch = image_size, channels
        while res > 4:
            out = min(512, ch * 2)
            self.conv0s.add(EqConv2D(ch, 3, name=f"b{res}_conv0"))
            self.conv1s.add(EqConv2D(out, 3, name=f"b{res}_conv1"))
            self.skips.add(EqConv2D(out, 1, activation=None, use_bias=False, name=f"b{res}_skip"))
            res, ch = res // 2, out
        self.pool = layers.AveragePooling2D(2)
        self.conv4 = EqConv2D(ch, 3, name="b4_conv")
        self.flatten = layers.Flatten()
        self.fc = EqDense(ch, activation="lrelu", name="fc")
        self.logit = EqDense(1, name="logit")
        self.embed = layers.Embedding(num_classes, ch, name="class_embed") if num_classes else None

    def call(self, images, class_ids=None, training=False):
        x = self.from_rgb(images)
        for conv0, conv1, skip in zip(self.conv0s, self.conv1s, self.skips):
            y = skip(self.pool(x))
            x = self.pool(conv1(conv0(x)))
            x = (x + y) * (1.0 / math.sqrt(2.0))
        if self.mbstd is not None:
            x = self.mbstd(x)
        h = self.fc(self.flatten(self.conv4(x)))
        out = self.logit(h)[:, 0]
        if self.embed is not None:
            out = out + tf.reduce_sum(self.embed(class_ids) * h, -1) / math.sqrt(h.shape[-1])
        return out


# ---- builders ---------------------------------------------------------------------------
def build_generator(cfg, image_size: int, num_classes: int, name="generator"):
    m = cfg.model
    n = num_classes if m.conditional else 0
    if m.arch == "stylegan":
        g = StyleGenerator(
            m.latent_dim, image_size, m.g_channels, n, m.w_dim, m.mapping_layers, name=name
        )
    else:
        g = DCGANGenerator(m.latent_dim, image_size, m.g_channels, n, m.g_upsample, name=name)
    z = tf.zeros([2, m.latent_dim])
    g(z, tf.zeros([2], tf.int64) if n else None, tf.ones([2]))  # create the weights
    return g


def build_discriminator(cfg, image_size: int, num_classes: int, name="discriminator"):
    m = cfg.model
    n = num_classes if m.conditional else 0
    if m.d_arch == "residual" or (m.d_arch == "auto" and m.arch == "stylegan"):
        d = ResidualDiscriminator(image_size, m.d_channels, n, m.minibatch_stddev, name=name)
    else:
        d = DCGANDiscriminator(image_size, m.d_channels, n, m.d_norm, m.minibatch_stddev, name=name)
    d(tf.zeros([2, image_size, image_size, 3]), tf.zeros([2], tf.int64) if n else None)
    return d
