"""GAN losses and penalties, all PER EXAMPLE: the train step averages them with
`keras_suite.common.training.replica_mean` over the global batch, so a run on N replicas optimises
exactly what one device would (the penalties need per-example gradients; a discriminator
with batch norm would mix examples, which config.validate refuses).
"""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()


def d_loss(kind: str, real_logits, fake_logits):
    """Discriminator loss per example (real and fake of the same index paired)."""
    if kind == "nonsaturating":  # -log D(x) - log(1 - D(G(z)))
        return tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits)
    if kind == "hinge":  # Lim & Ye 2017, Miyato et al. 2018
        return tf.nn.relu(1.0 - real_logits) + tf.nn.relu(1.0 + fake_logits)
    if kind == "wgan-gp":  # critic: E[D(fake)] - E[D(real)] (+ the gradient penalty)
        return fake_logits - real_logits
    raise ValueError(kind)


def g_loss(kind: str, fake_logits):
    """Generator loss per example: the non-saturating -log D(G(z)) (Goodfellow et al. 2014)
    or, for hinge and WGAN, -D(G(z))."""
    if kind == "nonsaturating":
        return tf.nn.softplus(-fake_logits)
    return -fake_logits


def _input_gradients(discriminator, images, class_ids):
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = discriminator(images, class_ids, training=True)
        # d(sum of logits)/d(image_i) = d(logit_i)/d(image_i): examples are independent
        total = tf.reduce_sum(logits)
    return tape.gradient(total, images), logits


def gradient_penalty(discriminator, real, fake, class_ids, seed):
    """WGAN-GP (Gulrajani et al. 2017): (|grad D(x_hat)|_2 - 1)^2 per example, x_hat a
    random point on the line between a real and a fake example (its own epsilon)."""
    eps = tf.random.stateless_uniform([tf.shape(real)[0], 1, 1, 1], seed=seed)
    x_hat = eps * real + (1.0 - eps) * fake
    grads, _ = _input_gradients(discriminator, x_hat, class_ids)
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) + 1e-12)
    return tf.square(norms - 1.0)


def r1_penalty(discriminator, real, class_ids):
    """R1 (Mescheder et al. 2018): |grad D(x_real)|^2 per example (times gamma/2 outside)."""
    grads, _ = _input_gradients(discriminator, real, class_ids)
    return tf.reduce_sum(tf.square(grads), axis=[1, 2, 3])
