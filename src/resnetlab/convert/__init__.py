"""Weight import from other frameworks: the seed's Keras ResNet50 HDF5 files."""

from .keras import LAYOUTS, KerasImportReport, convert_keras, load_keras_h5

__all__ = ["LAYOUTS", "KerasImportReport", "convert_keras", "load_keras_h5"]
