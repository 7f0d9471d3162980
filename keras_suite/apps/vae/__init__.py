"""Variational autoencoders (and plain/denoising autoencoders) on built-in shapes or image folders."""


def __getattr__(name):
    # APP is built on first use, so `ksuite --help` does not pay for a TensorFlow import.
    if name == "APP":
        from keras_suite.apps.vae.app import VAEApp

        globals()["APP"] = VAEApp()
        return globals()["APP"]
    raise AttributeError(name)
