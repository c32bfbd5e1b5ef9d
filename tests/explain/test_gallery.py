import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.analysis import plots
from resnetlab.engine import report as report_module
from resnetlab.engine.train import Trainer
from resnetlab.explain import ErrorSource, write_error_gallery
from resnetlab.explain import gallery as gallery_module
from resnetlab.explain.gallery import Mistakes

from .conftest import CLASSES, normalise, squares


def _batches(x, y, size=8):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_gallery_shows_the_mistakes_and_nothing_without_any(trained_resnet8, tmp_path, monkeypatch):
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
    # Images read from files are captioned with their file, to find a mislabelled one.
    captions = []
    monkeypatch.setattr(
        gallery_module,
        "render_overlay",
        lambda pixels, cam, caption, side: captions.append(caption),
    )
    monkeypatch.setattr(gallery_module, "tile", lambda pictures, title: Image.new("RGB", (8, 8)))
    paths = [f"photos/{CLASSES[int(c)]}/{i}.jpg" for i, c in enumerate(labels)]
    source = ErrorSource(trained_resnet8, _batches(x, labels), (0, 0, 0), (1, 1, 1), paths=paths)
    assert write_error_gallery(source, CLASSES, path) == 5
    named = sorted(int(caption.rsplit("/", 1)[1].split(".")[0]) for caption in captions)
    assert named == [0, 4, 8, 12, 16]  # the five called something else
    for caption in captions:
        i = int(caption.rsplit("/", 1)[1].split(".")[0])
        assert caption.startswith(f"true {CLASSES[int(labels[i])]}\npredicted ")
        assert caption.endswith(f"\n{CLASSES[int(labels[i])]}/{i}.jpg")
    assert (
        write_error_gallery(
            ErrorSource(trained_resnet8, _batches(x, predicted), (0, 0, 0), (1, 1, 1)),
            CLASSES,
            path,
        )
        == 0
    )
    assert not path.exists()  # a gallery from before is not left to mislead


def test_mistakes_kept_batch_by_batch_are_the_most_confident_of_all():
    """Kept on the device as batches come, the mistakes are those a sort of every image
    would pick: the most confident first, right answers never, across batch boundaries."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(100, 4, generator=gen) * 3
    y = torch.randint(0, 4, (100,), generator=gen)
    x = torch.arange(100.0)[:, None, None, None].expand(100, 3, 2, 2)  # image i is all i
    p, predicted = logits.softmax(1).max(1)
    wrong = [i for i in range(100) if predicted[i] != y[i]]
    expected = sorted(wrong, key=lambda i: -p[i])
    for batch, limit in [(7, 16), (100, 16), (3, 5), (16, 200)]:
        mistakes = Mistakes(limit)
        for i in range(0, 100, batch):
            mistakes.add(x[i : i + batch], y[i : i + batch], logits[i : i + batch])
        rows, count = mistakes.most_confident()
        assert count == len(wrong)
        assert [int(row.image[0, 0, 0]) for row in rows] == expected[:limit]
        for prob, image, true, guess, place in rows:
            i = int(image[0, 0, 0])
            assert (true, guess, place) == (int(y[i]), int(predicted[i]), i)
            assert abs(prob - float(p[i])) < 1e-6
    # Equally confident mistakes (saturated probabilities) are kept in the order seen.
    saturated = torch.full((40, 4), -30.0)
    saturated[:, 0] = 30.0  # every image called class 0 with probability 1.0
    ties = Mistakes(5)
    for i in range(0, 40, 6):
        batch = saturated[i : i + 6]
        ties.add(x[i : i + len(batch)], torch.ones(len(batch), dtype=torch.int64), batch)
    assert [row.place for row in ties.most_confident()[0]] == [0, 1, 2, 3, 4]
    everything_right = Mistakes()
    everything_right.add(x[:10], predicted[:10], logits[:10])
    assert everything_right.most_confident() == ([], 0)
    assert Mistakes().most_confident() == ([], 0)


@pytest.mark.figures
def test_every_run_folder_gets_its_error_gallery(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    pixels, labels = squares(96, seed=43)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    # The last validation pass's mistakes make the gallery: no second pass over the images.
    passes = []
    real = gallery_module.Mistakes.add
    monkeypatch.setattr(gallery_module.Mistakes, "add", lambda *a: passes.append(1) or real(*a))

    def second_pass(*args):
        raise AssertionError("a second pass over the validation images")

    sources = []
    monkeypatch.setattr(
        gallery_module,
        "_mistakes",
        lambda source, limit: sources.append(source) or source.seen or second_pass(),
    )
    # One short epoch: far from perfect, so there are mistakes to show.
    run = resnetlab.train(
        model="resnet8",
        data=str(folder),
        epochs=1,
        batch_size=32,
        log_every=10,
        out=str(tmp_path / "run"),
    )
    assert run.summary["final_val_acc"] < 1 and passes
    # The gallery knows each validation image's file, in the order validation saw them.
    (source,) = sources
    assert len(source.paths) == run.summary["val_images"] == sum(len(y) for _, y in source.loader)
    labels = torch.cat([y for _, y in source.loader]).tolist()
    assert [CLASSES[label] for label in labels] == [Path(p).parent.name for p in source.paths]
    with Image.open(run.run_dir / "errors.png") as im:
        assert im.format == "PNG" and im.height > 128


def test_a_file_name_that_is_not_utf8_is_captioned_as_its_class_folder_is_named():
    # As Latin-1, not as undecodable bytes, which no font has a glyph for.
    path = os.fsdecode(b"photos/caf\xe9/photo-\xe8.jpg")
    assert gallery_module._file_line([path], 0) == "\ncafé/photo-è.jpg"


def test_an_image_deeper_in_its_class_folder_is_captioned_from_the_class_folder():
    # photos/cat/2019/IMG_1.jpg: "cat/2019/IMG_1.jpg" finds the photo; "2019/IMG_1.jpg"
    # names a folder that photos/ does not hold.
    paths = ["photos/cat/2019/IMG_1.jpg", "photos/cat/IMG_2.jpg", "signs/3_IMG_5.jpg"]
    assert gallery_module._file_line(paths, 0, "cat") == "\ncat/2019/IMG_1.jpg"
    assert gallery_module._file_line(paths, 1, "cat") == "\ncat/IMG_2.jpg"
    assert gallery_module._file_line(paths, 2, "3") == "\nsigns/3_IMG_5.jpg"  # classes by name


@pytest.mark.figures
def test_the_gallery_shows_the_mistakes_of_the_model_best_safetensors_holds(tmp_path, monkeypatch):
    """errors.png is for finding mislabelled images with the model a run ships: where the
    best epoch is not the last, its model's mistakes, said so in the title; and after a
    resume (its pass's mistakes gone) a pass of that model over the validation images."""
    folder = tmp_path / "data"
    pixels, labels = squares(96, seed=43)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    trainer = sys.modules[Trainer.__module__]
    real_evaluate = trainer.evaluate_loader
    scripted = iter([0.9, 0.5, 0.6, 0.7])  # epoch 1 the best, whatever the model does

    def evaluate_loader(*args, **kwargs):
        return dataclasses.replace(real_evaluate(*args, **kwargs), accuracy=next(scripted))

    monkeypatch.setattr(trainer, "evaluate_loader", evaluate_loader)
    drawn = []
    real_gallery = report_module.write_error_gallery
    monkeypatch.setattr(
        report_module,
        "write_error_gallery",
        lambda source, names, path, title: (
            drawn.append((source, title)) or real_gallery(source, names, path, title=title)
        ),
    )
    confusions = []  # the last validation's, as the title says
    monkeypatch.setattr(plots, "plot_confusion", lambda *a, title: confusions.append(title))
    common = dict(model="resnet8", data=str(folder), batch_size=32, lr=0.01, seed=1)
    run = resnetlab.train(**common, epochs=3, out=str(tmp_path / "run"))
    assert (run.summary["best_epoch"], run.summary["epochs"]) == (1, 3)
    best = resnetlab.load_model(run.run_dir / "best.safetensors")
    last = resnetlab.load_model(run.run_dir / "last.safetensors")

    def shown(source):
        kept, count = gallery_module._mistakes(source, gallery_module.GALLERY_SIZE).most_confident()
        return [(k.place, k.predicted) for k in kept], count

    def passed(model, source):
        return shown(dataclasses.replace(source, model=model, seen=None))

    (source, title) = drawn.pop()
    assert shown(source) == passed(best, source) != passed(last, source)
    state = source.model.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in best.state_dict().items())
    assert title == "resnet8 of epoch 1 (best.safetensors) on the validation images"
    assert (run.run_dir / "errors.png").is_file()
    assert confusions == ["resnet8 of epoch 3 (last.safetensors) on the validation images"]
    # Resumed for one more epoch (not the best): the best model's mistakes, from a pass.
    resumed = resnetlab.train(resume=run.run_dir, epochs=4)
    assert resumed.summary["best_epoch"] == 1
    (source, title) = drawn.pop()
    assert source.seen is None and title.startswith("resnet8 of epoch 1 (best.safetensors)")
    assert shown(source) == passed(best, source)


def test_a_title_wider_than_the_sheet_is_broken_into_lines_that_fit_it():
    # errors.png of a run with one mistake is one picture wide: its title ran off the edge.
    from resnetlab.explain import render

    title = "resnet20 of epoch 8 (best.safetensors) on the validation images: 1 misclassified"
    sheet = render.tile([Image.new("RGB", (260, 150), (0, 0, 0))], title=title)
    assert sheet.width == 260 + 16  # the grid's width, title or not
    band = np.asarray(sheet.convert("L"))[: sheet.height - 150 - 16]  # above the picture
    inked = np.flatnonzero(band.min(axis=1) < 128)  # rows with text
    text_size = 14  # tile's, for pictures up to 196 pixels tall
    assert len(inked) and inked[-1] - inked[0] > 1.5 * text_size  # lines under lines
    lines = render._wrapped(title, text_size, sheet.width - 16)
    assert len(lines) > 1 and " ".join(lines) == title
    assert all(render._text_width(line, text_size) <= sheet.width - 16 for line in lines)
