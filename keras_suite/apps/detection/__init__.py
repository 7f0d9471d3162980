"""Object detection: a YOLOv8-style anchor-free detector (docs/detection.md)."""


def __getattr__(name):
    # Built on first use: `ksuite --help` imports keras_suite.apps.detection.commands without TensorFlow.
    if name == "APP":
        from keras_suite.apps.detection.app import DetectionApp

        globals()["APP"] = DetectionApp()
        return globals()["APP"]
    raise AttributeError(name)
