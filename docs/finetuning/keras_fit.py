"""Train the course's ResNet50 in Keras as the course's notebook does, and save it as .h5.

The course builds ``ResNet50(input_shape=(64, 64, 3), classes=6)``, compiles it with Adam and
categorical cross-entropy, fits it for 2 epochs with batch 32 on SIGNS scaled to [0, 1],
and saves it; this does the same with the model of ``tests/convert/keras_seed.py``. Run from
the project root:

    KERAS_BACKEND=torch python docs/finetuning/keras_fit.py ../shared/data/signs ResNet50.h5
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.convert.keras_seed import seed_resnet50


def load(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path) as f:
        x = f[f"{split}_set_x"][()].astype("float32") / 255
        y = keras.utils.to_categorical(f[f"{split}_set_y"][()], 6)
    return x, y


def main(signs: str, out: str, epochs: int = 2, seed: int = 0) -> None:
    keras.utils.set_random_seed(seed)
    x_train, y_train = load(Path(signs) / "train_signs.h5", "train")
    x_test, y_test = load(Path(signs) / "test_signs.h5", "test")
    model = seed_resnet50((64, 64, 3), 6)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"{epochs} epochs in {seconds:.0f} s; test accuracy {accuracy:.4f}, loss {loss:.4f}")
    model.save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
