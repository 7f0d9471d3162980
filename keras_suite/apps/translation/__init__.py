"""Translation: Transformer or RNN+attention seq2seq on sentence pairs (built-in or TSV)."""


def __getattr__(name):
    # APP is built on first use, so `ksuite --help` does not pay for a TensorFlow import.
    if name == "APP":
        from keras_suite.apps.translation.app import TranslationApp

        globals()["APP"] = TranslationApp()
        return globals()["APP"]
    raise AttributeError(name)
