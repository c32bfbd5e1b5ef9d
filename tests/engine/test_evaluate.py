import pytest
import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from resnetlab.engine.evaluate import EvalReport, EvalResult, evaluate_loader


class Lookup(torch.nn.Module):
    """A "model" that returns the logits stored for each input index."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x]


def test_confusion_precision_and_recall_agree_with_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    k, n = 5, 203
    logits = torch.randn(n, k, generator=generator)
    labels = torch.randint(0, k - 1, (n,), generator=generator)  # class 4 never occurs
    logits[:, 3] -= 10  # and class 3 is never predicted
    batches = [(torch.arange(n)[i : i + 64], labels[i : i + 64]) for i in range(0, n, 64)]
    result = evaluate_loader(Lookup(logits), batches, k)
    predicted = logits.argmax(1)
    expected = confusion_matrix(labels, predicted, labels=range(k))
    assert result.confusion.tolist() == expected.tolist()
    precision, recall, _, _ = precision_recall_fscore_support(
        labels, predicted, labels=range(k), zero_division=0
    )
    ours_precision, ours_recall = result.per_class()
    assert ours_precision == precision.tolist() and ours_recall == recall.tolist()
    names = ["ant", "bee", "cat", "dog", "eel"]
    rows = EvalReport(result, names, "data", "model").per_class()
    assert list(rows) == names and rows["eel"]["support"] == 0  # class 4 never occurs
    assert [rows[name]["recall"] for name in names] == recall.tolist()
    assert rows["bee"]["support"] == (labels == 1).sum().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert abs(result.loss - loss) < 1e-6 and result.count == n
    assert result.accuracy == (predicted == labels).sum().item() / n


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_agrees_with_scikit_learn_and_shows_only_where_classes_differ():
    generator = torch.Generator().manual_seed(1)
    k, n = 4, 150
    logits = torch.randn(n, k, generator=generator)
    labels = torch.cat([torch.zeros(100), torch.ones(40), torch.full((10,), 2)]).long()
    result = evaluate_loader(Lookup(logits), [(torch.arange(n), labels)], k)  # class 3: none
    expected = balanced_accuracy_score(labels, logits.argmax(1))
    assert result.balanced_accuracy == pytest.approx(expected, abs=1e-12)
    assert result.imbalanced and result.balanced_accuracy != result.accuracy
    report = EvalReport(result, ["a", "b", "c", "d"], "data", "model").to_dict()
    assert report["balanced_accuracy"] == result.balanced_accuracy
    even = torch.arange(3).repeat(20)  # 20 images of each class
    result = evaluate_loader(Lookup(logits[:60]), [(torch.arange(60), even)], k)
    assert not result.imbalanced


def test_top5_accuracy_counts_the_true_class_among_the_five_most_probable():
    # 7 classes, 4 images: class ranks of the true label are 1, 3, 5 and 6.
    logits = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5, 6],  # true 0: first
            [1.0, 9, 8, 7, 6, 5, 4],  # true 3: third
            [9.0, 8, 7, 6, 5, 4, 3],  # true 4: fifth
            [9.0, 8, 7, 6, 5, 4, 3],  # true 5: sixth
        ]
    )
    batch = (torch.arange(4), torch.tensor([0, 3, 4, 5]))
    result = evaluate_loader(Lookup(logits), [batch], num_classes=7)
    assert (result.accuracy, result.top5) == (0.25, 0.75)
    # With 5 classes or fewer, top-5 says nothing: it is not reported.
    five = evaluate_loader(Lookup(logits[:, :5]), [(batch[0], torch.tensor([0, 3, 4, 1]))], 5)
    assert five.top5 is None


def test_a_report_of_a_thousand_classes_is_one_short_line():
    k = 1000
    confusion = torch.eye(k, dtype=torch.int64)
    result = evaluate_loader(Lookup(torch.eye(k)), [(torch.arange(k), torch.arange(k))], k)
    report = EvalReport(result, [f"class {i}" for i in range(k)], "imagenet/", "m.safetensors")
    assert torch.equal(report.result.confusion, confusion)
    text = repr(report)
    assert "\n" not in text and len(text) < 200
    assert "accuracy=1.0" in text and "data='imagenet/'" in text


def test_the_batches_are_counted_without_reading_anything_back_from_the_device():
    # Tensors on the meta device have no values: any step that must read one (as bincount
    # reads the largest label on a GPU, each batch) fails there. Only the final sum may.
    seen = []
    model = torch.nn.Linear(4, 7).to("meta")
    batches = [(torch.empty(8, 4, device="meta"), torch.empty(8, dtype=torch.int64, device="meta"))]
    with pytest.raises(RuntimeError, match="meta tensor"):  # the final sum, the only read
        evaluate_loader(model, batches * 3, 7, observe=lambda x, y, logits: seen.append(y))
    assert len(seen) == 3


def test_eval_table_says_dash_where_a_class_has_no_images_or_no_predictions(capsys):
    # The numbers keep scikit-learn's 0 for 0/0; the table a user reads says "-" there,
    # so a class missing from the test folder does not read as one the model always misses.
    import argparse

    from resnetlab.cli import _print_eval_report

    confusion = torch.tensor([[3, 1, 0], [0, 4, 0], [0, 0, 0]])  # "cat": no image, none predicted
    result = EvalResult(loss=0.5, accuracy=7 / 8, count=8, confusion=confusion)
    report = EvalReport(result, ["ant", "bee", "cat"], "photos", "m.safetensors")
    _print_eval_report(argparse.Namespace(model_file="m", data="photos"), report, None)
    out = capsys.readouterr().out
    table = out[out.index("per class") : out.index("confusion (rows")]
    rows = {
        cells[0]: cells[1:]
        for line in table.splitlines()
        if "│" in line and (cells := [c.strip() for c in line.split("│")[1:-1]])[0]
    }
    assert rows["ant"] == ["1.000", "0.750", "4"] and rows["bee"] == ["0.800", "1.000", "4"]
    assert rows["cat"] == ["-", "-", "0"]
    assert "(-: no image of the class here, or none predicted as it)" in table
    assert report.to_dict()["per_class"][2] == {  # the numbers are scikit-learn's
        "class": "cat",
        "precision": 0.0,
        "recall": 0.0,
        "support": 0,
    }
