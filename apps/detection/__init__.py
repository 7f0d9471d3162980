"""Object detection: a YOLOv8-style anchor-free detector (docs/detection.md)."""
import common  # noqa: F401
from apps.detection.app import DetectionApp

APP = DetectionApp()
