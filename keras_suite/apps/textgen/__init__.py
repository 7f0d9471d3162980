"""Text generation: char-RNN (GRU/LSTM, stateless or stateful) and a small GPT with a KV
cache, on the Python standard library's source or any UTF-8 text."""


def __getattr__(name):
    # APP is built on first use so `ksuite --help` does not import TensorFlow.
    if name == "APP":
        from keras_suite.apps.textgen.app import TextGenApp

        globals()["APP"] = TextGenApp()
        return globals()["APP"]
    raise AttributeError(name)
