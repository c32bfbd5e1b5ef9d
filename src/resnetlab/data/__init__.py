"""Data: sources (SIGNS HDF5, image folders, CIFAR-10, digits), decoded sets, and loaders.

``load_dataset`` turns ``--data``/``--val-data`` specs into training and validation splits,
each an ``ImageSet`` (decoded into memory) or a ``StreamingSet`` (files decoded as they are
needed); ``make_loader`` gives the loader for either, with one interface.
"""

from .cifar10 import download as download_cifar10
from .decode import MAX_UNREADABLE_FRACTION, read_image
from .folders import STREAM_ABOVE_BYTES
from .imageset import ImageSet
from .loader import Augment, DeviceLoader, channel_stats
from .sources import (
    Dataset,
    load_dataset,
    load_eval_split,
    make_loader,
    split_stats,
    stratified_sample,
    stratified_split,
)
from .streaming import StreamingLoader, StreamingSet

__all__ = [
    "MAX_UNREADABLE_FRACTION",
    "STREAM_ABOVE_BYTES",
    "Augment",
    "Dataset",
    "DeviceLoader",
    "ImageSet",
    "StreamingLoader",
    "StreamingSet",
    "channel_stats",
    "download_cifar10",
    "load_dataset",
    "load_eval_split",
    "make_loader",
    "read_image",
    "split_stats",
    "stratified_sample",
    "stratified_split",
]
