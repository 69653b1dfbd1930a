"""Server-side fall detection on accelerometer windows from a cane or a watch."""

from detectors.falls.detector import FallDetector, FallState, PendingFall
from detectors.falls.params import FallParams, FallThresholds

__all__ = ["FallDetector", "FallParams", "FallState", "FallThresholds", "PendingFall"]
