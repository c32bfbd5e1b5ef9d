import torch
from PIL import Image

import resnetlab
from resnetlab.explain import ErrorSource, write_error_gallery

from .conftest import CLASSES, normalise, squares


def _batches(x, y, size=8):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_gallery_shows_the_mistakes_and_nothing_without_any(trained_resnet8, tmp_path):
    pixels, _ = squares(20, seed=41)
    x = normalise(pixels)
    with torch.no_grad():
        predicted = trained_resnet8(x).argmax(1)
    path = tmp_path / "errors.png"
    source = ErrorSource(trained_resnet8, _batches(x, predicted), (0, 0, 0), (1, 1, 1))
    assert write_error_gallery(source, CLASSES, path) == 0 and not path.exists()
    wrong = (predicted + 1) % 3  # call 5 of them something else
    labels = torch.where(torch.arange(20) % 4 == 0, wrong, predicted)
    source = ErrorSource(trained_resnet8, _batches(x, labels), (0, 0, 0), (1, 1, 1))
    assert write_error_gallery(source, CLASSES, path, title="squares") == 5
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 4 * 2 * 128  # 4 columns of image + map
    assert (
        write_error_gallery(
            ErrorSource(trained_resnet8, _batches(x, predicted), (0, 0, 0), (1, 1, 1)),
            CLASSES,
            path,
        )
        == 0
    )
    assert not path.exists()  # a gallery from before is not left to mislead


def test_every_run_folder_gets_its_error_gallery(tmp_path):
    folder = tmp_path / "data"
    pixels, labels = squares(96, seed=43)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    # One short epoch: far from perfect, so there are mistakes to show.
    run = resnetlab.train(
        model="resnet8",
        data=str(folder),
        epochs=1,
        batch_size=32,
        log_every=10,
        out=str(tmp_path / "run"),
    )
    assert run.summary["final_val_acc"] < 1
    with Image.open(run.run_dir / "errors.png") as im:
        assert im.format == "PNG" and im.height > 128
