"""Image generation: DCGAN and StyleGAN-lite with FID/KID on an offline feature network (docs/gan.md)."""


def __getattr__(name):
    # Built on first use: `ksuite --help` imports keras_suite.apps.gan.commands without TensorFlow.
    if name == "APP":
        from keras_suite.apps.gan.app import GanApp

        globals()["APP"] = GanApp()
        return globals()["APP"]
    raise AttributeError(name)
