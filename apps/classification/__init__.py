"""Image classification on built-in shapes, class-per-folder trees or TFRecords."""
from apps.classification.app import ClassificationApp

APP = ClassificationApp()
