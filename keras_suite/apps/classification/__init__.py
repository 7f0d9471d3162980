"""Image classification on built-in shapes, class-per-folder trees or TFRecords."""


def __getattr__(name):
    # APP is built on first use, so `import keras_suite.apps.classification.cli`-style lookups and
    # `ksuite --help` do not pay for a TensorFlow import.
    if name == "APP":
        from keras_suite.apps.classification.app import ClassificationApp

        globals()["APP"] = ClassificationApp()
        return globals()["APP"]
    raise AttributeError(name)
