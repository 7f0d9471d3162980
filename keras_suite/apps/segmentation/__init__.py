"""Semantic segmentation (U-Net / DeepLabV3+) on shape scenes, mask PNG pairs or Pascal VOC."""


def __getattr__(name):
    # APP is built on first use, so `ksuite --help` does not pay for a TensorFlow import.
    if name == "APP":
        from keras_suite.apps.segmentation.app import SegmentationApp

        globals()["APP"] = SegmentationApp()
        return globals()["APP"]
    raise AttributeError(name)
