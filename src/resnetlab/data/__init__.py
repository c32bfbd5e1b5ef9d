"""Data: decoded image sets, and the loaders that feed them to a model."""

from .imageset import ImageSet
from .loader import Augment, DeviceLoader, channel_stats

__all__ = ["Augment", "DeviceLoader", "ImageSet", "channel_stats"]
