import os
from dataclasses import replace

import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.errors import command_line
from resnetlab.explain import (
    METHODS,
    class_activation_maps,
    deletion_check,
    randomized_copy,
    rank_correlation,
    run_checks,
    sanity_check,
)
from resnetlab.explain.faithfulness import CheckRow, chance_note, check_model

from .conftest import CLASSES, normalise, squares

# Below this mean rank correlation the maps of the trained and the re-initialised model
# count as different (Adebayo et al. call 1 "unchanged" and read values near 0 as a pass).
SANITY_LIMIT = 0.5


@pytest.fixture(scope="module")
def images():
    return normalise(squares(32, seed=11)[0])


def test_rank_correlation_is_spearmans():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 6, 5, generator=generator)
    b = a + torch.rand(3, 6, 5, generator=generator)
    a[0, :3] = 0  # ties, as a ReLU'd map has
    b[1, 2:] = 0.5
    ours = rank_correlation(a, b)
    for i in range(3):
        expected = spearmanr(a[i].flatten(), b[i].flatten()).statistic
        assert ours[i].item() == pytest.approx(expected, abs=1e-6)
    assert rank_correlation(a, a).tolist() == pytest.approx([1, 1, 1])
    assert rank_correlation(a, torch.zeros_like(a)).tolist() == [0, 0, 0]  # constant map


def test_randomized_copy_reinitialises_only_the_last_stages_and_head(trained_resnet8):
    copied = randomized_copy(trained_resnet8, stages=1)
    before, after = trained_resnet8.state_dict(), copied.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer3", "fc"}
    changed = {
        k.split(".")[0]
        for k, v in randomized_copy(trained_resnet8, stages=2).state_dict().items()
        if not torch.equal(before[k], v)
    }
    assert changed == {"layer2", "layer3", "fc"}
    again = randomized_copy(trained_resnet8, stages=1).state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)  # seeded


def test_sanity_check_maps_change_as_the_model_is_reinitialised(trained_resnet8, images):
    """Cascading randomisation, as in Adebayo et al.: the more of the network is
    re-initialised, the less the maps resemble the trained model's. Grad-CAM passes
    outright once the network is destroyed; the methods that multiply by the activations
    (Grad-CAM++, LayerCAM, Score-CAM) keep more of the image's structure (on this model,
    about 0.9 with the last stage re-initialised and 0.6 with all of it)."""
    x = images[:16]
    last, everything = randomized_copy(trained_resnet8, 1), randomized_copy(trained_resnet8, 3)
    for method in METHODS:
        top = sanity_check(trained_resnet8, x, method=method, randomized=last).mean()
        whole = sanity_check(trained_resnet8, x, method=method, randomized=everything).mean()
        assert whole < top - 0.1, method
        if method == "gradcam":
            assert whole < SANITY_LIMIT
    # The check can fail: a map that ignores the model (an edge detector, the classic
    # failure in the paper) is the same for both models.
    edges = (x[:, :, 1:, 1:] - x[:, :, :-1, :-1]).abs().sum(1)
    assert rank_correlation(edges, edges).mean() > SANITY_LIMIT


def test_deletion_check_the_map_knows_where_the_evidence_is(trained_resnet8, images):
    generator = torch.Generator().manual_seed(0)
    for method in METHODS:
        drop, random_drop = deletion_check(
            trained_resnet8, images, method=method, generator=generator
        )
        assert drop.mean() > random_drop.mean() + 0.1, method
    # The check can fail: blanking what the map ranks lowest removes less than chance does.
    maps = class_activation_maps(trained_resnet8, images).maps
    drop, random_drop = deletion_check(trained_resnet8, images, maps=1 - maps, generator=generator)
    assert drop.mean() < random_drop.mean()


def test_run_checks_averages_over_batches(trained_resnet8, images):
    rows = run_checks(
        trained_resnet8, [images[:20], (images[20:], None)], methods=["gradcam"], stages=3
    )
    (row,) = rows
    assert row.images == 32 and row.layer == "layer3" and (row.fraction, row.stages) == (0.2, 3)
    assert row.rank_correlation < SANITY_LIMIT and row.deletion_drop > row.random_drop
    (whole,) = run_checks(trained_resnet8, images, methods=["gradcam"], stages=3)
    assert whole.images == 32  # one tensor is one batch, not 32 of one image each
    with pytest.raises(ResnetlabError, match=r"for a data set, check_model\(model, data\)$"):
        run_checks(trained_resnet8, "digits")


def test_a_methods_row_does_not_depend_on_the_others_checked(trained_resnet8, images):
    """The random masks are drawn alike for every method: one baseline, and the same
    numbers for `--method layercam` alone as in the table of every method."""
    batches = [images[:20], images[20:]]
    seen = []
    both = run_checks(
        trained_resnet8, iter(batches), methods=["gradcam", "layercam"], on_row=seen.append
    )
    (alone,) = run_checks(trained_resnet8, batches, methods=["layercam"])
    assert both[1] == alone
    assert both[0].random_drop == both[1].random_drop
    # Each row is given as its method is done, over every batch (an iterator too).
    assert seen == both and both[0].images == 32


def test_cli_check_prints_one_row_per_method(model_file, tmp_path, capsys):
    folder = tmp_path / "squares"
    pixels, labels = squares(12, seed=21)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    assert main(["explain", str(model_file), str(folder), "--check"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("| model | method | rank correlation, last 1 stage(s) ")
    rows = [line for line in captured.out.splitlines() if line.startswith("| resnet8 |")]
    assert [row.split("|")[2].strip() for row in rows] == list(METHODS)
    assert len(captured.out.splitlines()) == 2 + len(METHODS)
    assert "no held-out split: all 12 images are scored" in captured.err
    assert captured.err.startswith(
        "checking gradcam, gradcam++, layercam, scorecam on 12 images (Score-CAM runs a forward"
    )
    for row in rows:
        rho, drop, random_drop = (float(v) for v in row.split("|")[3:6])
        assert -1 <= rho <= 1 and drop > random_drop
    assert main(["explain", str(model_file), str(folder), "--check", "--fraction", "1.5"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (  # named as the flag it was given with
        "error: --fraction, the share of each image blanked, must be between 0 and 1 "
        "(0.2 blanks a fifth), got 1.5\n"
    )
    assert captured.out == ""  # no table begun
    # Stages the model lacks: refused before the check starts, not after its first line.
    assert main(["explain", str(model_file), str(folder), "--check", "--stages", "9"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --stages must be from 1 to 3 (resnet8's stages), got 9\n"
    # Nor are the overlays' settings with --check, which explains the predicted classes.
    assert main(["explain", str(model_file), str(folder), "--check", "--class", "red"]) == 2
    assert capsys.readouterr().err == (
        "error: --class applies to the overlays explain draws; --check measures the maps of "
        "each image's predicted class and writes no files: drop it\n"
    )
    given = ["--check", "--class", "red", "--out", str(folder / "cams")]
    assert main(["explain", str(model_file), str(folder), *given]) == 2
    assert capsys.readouterr().err.startswith("error: --class and --out apply to the overlays")
    # The check's settings without --check are not ignored.
    image = str(folder / "red" / os.listdir(folder / "red")[0])
    assert main(["explain", str(model_file), image, "--stages", "2", "--fraction", "0.5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --fraction and --stages set the faithfulness check: add --check, or drop them"
    )
    assert main(["explain", str(model_file), image, "--fraction", "0.5"]) == 2
    assert capsys.readouterr().err == (
        "error: --fraction sets the faithfulness check: add --check, or drop it\n"
    )
    # Data whose classes are not the model's is refused, as evaluate refuses it.
    (folder / "red").rename(folder / "orange")
    assert main(["explain", str(model_file), str(folder), "--check"]) == 2
    assert "but the model was trained on 3: [blue, green, red]" in capsys.readouterr().err


def test_a_map_no_better_than_chance_is_said_so():
    row = CheckRow("gradcam", "layer3", 60, 0.1, 0.090, 0.095, fraction=0.2, stages=1)
    with command_line():  # as `explain --check` says it
        note = chance_note(row)
    assert note == (
        "gradcam: blanking the top 20% of its maps lowers the probability no more than "
        "blanking a random 20% (0.090 vs 0.095): its maps do not show what this model's "
        "predictions depend on (a model near chance, or try another --layer)"
    )
    assert chance_note(replace(row, deletion_drop=0.120)) is None  # 2.5 points more
    assert chance_note(replace(row, deletion_drop=0.114)) is not None  # 1.9 points more


def test_the_check_notes_a_feature_map_too_coarse_to_point_at_a_place(tmp_path, capsys):
    model_file = tmp_path / "r18.safetensors"
    # The note is of the feature map's size, not its width: a narrow resnet18 is checked.
    model = resnetlab.create_model("resnet18", num_classes=len(CLASSES), widths=[8, 8, 16, 16])
    resnetlab.save_model(model, model_file, class_names=CLASSES, input_size=32)
    folder = tmp_path / "squares"
    pixels, labels = squares(6, seed=5)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    command = ["explain", str(model_file), str(folder), "--check", "--method", "gradcam"]
    assert main(command) == 0
    assert (
        "note: layer4's feature map is 1x1 for images of 32x32 pixels: one cell points at no "
        "place, so every map is blank; take --layer layer3, or train at a larger --input-size"
    ) in capsys.readouterr().err
    assert main([*command, "--layer", "layer3"]) == 0  # 2x2: finer, still coarse
    assert "note: layer3's feature map is 2x2" in capsys.readouterr().err


def _square_folder(folder, n: int = 6, seed: int = 5):
    pixels, labels = squares(n, seed=seed)
    for i, (image, label) in enumerate(zip(pixels.numpy(), labels.tolist(), strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[label] / f"{i}.png")
    return folder


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_loaded_model_in_another_dtype_is_checked_in_float32(model_file, tmp_path, dtype):
    """check_model(model.double(), data) stopped in a convolution: 'Input type
    (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same'; explain
    takes such a model in float32."""
    folder = _square_folder(tmp_path / "squares")
    # gradcam named twice (--method gradcam --method gradcam): one row, not the same row twice
    expected, _ = check_model(model_file, str(folder), methods=["gradcam"] * 2, device="cpu")
    assert [row.method for row in expected] == ["gradcam"]
    model = resnetlab.load_model(model_file).to(dtype)
    got, _ = check_model(model, str(folder), methods=["gradcam"], device="cpu")
    assert next(model.parameters()).dtype == dtype  # the caller's model is left as it was
    assert got[0].images == expected[0].images
    assert got[0].deletion_drop == pytest.approx(expected[0].deletion_drop, abs=0.02)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_loaded_model_is_checked_on_the_device_named(model_file, tmp_path):
    """A model loaded on the CPU (load_model's default) and checked on a GPU ('auto' on a
    machine with one takes the model's device; 'cuda' moves a copy there)."""
    folder = _square_folder(tmp_path / "squares")
    expected, _ = check_model(model_file, str(folder), methods=["gradcam"], device="cpu")
    model = resnetlab.load_model(model_file)
    for device in ("auto", "cuda"):
        got, _ = check_model(model, str(folder), methods=["gradcam"], device=device)
        assert got[0].deletion_drop == pytest.approx(expected[0].deletion_drop, abs=0.02)
    assert next(model.parameters()).device.type == "cpu"
