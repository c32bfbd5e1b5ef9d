import torch
from torch import nn

from resnetlab.engine.evaluate import evaluate_loader


class _Fixed(nn.Module):
    """Returns the logits it was given, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x.long().flatten()]


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
    batch = (torch.arange(4.0)[:, None], torch.tensor([0, 3, 4, 5]))
    result = evaluate_loader(_Fixed(logits), [batch], num_classes=7)
    assert (result.accuracy, result.top5) == (0.25, 0.75)
    # With 5 classes or fewer, top-5 says nothing: it is not reported.
    five = evaluate_loader(_Fixed(logits[:, :5]), [(batch[0], torch.tensor([0, 3, 4, 1]))], 5)
    assert five.top5 is None
