import warnings

import pytest
import torch

import resnetlab
from resnetlab.analysis import count_parameters
from resnetlab.bench.reference import (
    PlainLoop,
    UsualCifarResNet,
    UsualKerasResNet50,
    peer_model,
)
from resnetlab.engine import TrainConfig


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "plain20"])
def test_usual_cifar_nets_are_the_same_architecture(name):
    ours = resnetlab.create_model(name)
    peer = peer_model(name, num_classes=10, input_size=32)
    assert isinstance(peer.model, UsualCifarResNet) and peer.usual_way
    assert count_parameters(peer.model) == count_parameters(ours)
    assert peer.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_usual_keras_resnet50_is_the_seed_architecture():
    for size in (64, 96):
        ours = resnetlab.create_model("resnet50_keras", input_size=size)
        peer = peer_model("resnet50_keras", num_classes=6, input_size=size)
        assert isinstance(peer.model, UsualKerasResNet50)
        assert count_parameters(peer.model) == count_parameters(ours)
    assert count_parameters(UsualKerasResNet50(6, 64))[0] == 23_546_886
    assert peer.model(torch.randn(2, 3, 96, 96)).shape == (2, 6)


def test_imagenet_peer_is_torchvision_and_plain_nets_have_none():
    peer = peer_model("resnet50", num_classes=7, input_size=224)
    assert type(peer.model).__module__ == "torchvision.models.resnet" and not peer.usual_way
    ours = resnetlab.create_model("resnet50", num_classes=7)
    assert peer.model.state_dict().keys() == ours.state_dict().keys()
    with pytest.raises(resnetlab.ResnetlabError, match="compare resnet34 instead"):
        peer_model("plain34", num_classes=10, input_size=224)


def test_plain_loop_trains():
    torch.manual_seed(0)
    model = UsualCifarResNet(20)
    loop = PlainLoop(model, TrainConfig(model="resnet20", lr=0.05), None)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    losses = []
    for _ in range(4):
        before = loop.running_loss
        loop(x, y)
        losses.append(loop.running_loss - before)
    assert losses[-1] < losses[0]


def test_variant_peers_come_from_torchvision_or_timm():
    pytest.importorskip("timm")
    peer = peer_model("resnet18d", num_classes=5, input_size=64)
    assert type(peer.model).__module__ == "timm.models.resnet" and not peer.usual_way
    ours = resnetlab.create_model("resnet18d", num_classes=5)
    assert peer.model.state_dict().keys() == ours.state_dict().keys()
    assert peer_model("resnext50_32x4d", num_classes=5, input_size=64).description == (
        "torchvision.models.resnext50_32x4d"
    )


@pytest.mark.parametrize("name", ["preresnet20", "wrn16_8", "resnet164"])
def test_cifar_nets_without_a_reference_say_so(name):
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        peer_model(name, num_classes=10, input_size=32)
    message = str(caught.value)
    assert message.startswith(f"there is no peer for {name}: torchvision has no CIFAR nets")
    # Which nets have one, and the fix: time ours alone.
    assert "resnet8..resnet1202, plain8..plain110" in message
    assert message.endswith("; leave out vs to time ours alone")


@pytest.mark.parametrize(
    ("threads", "env", "count"), [(None, None, 2), (None, "8", 8), (4, None, 4)]
)
def test_the_threads_not_given_are_the_cpu_quotas_for_both_sides(monkeypatch, threads, env, count):
    from resnetlab.bench import sides
    from resnetlab.engine import threads as engine_threads

    monkeypatch.setattr(
        engine_threads, "cpu_quota", lambda root="/": (2.0, "cpu.max 200000 100000")
    )
    monkeypatch.setattr(engine_threads, "usable_cpus", lambda root="/": 2)
    monkeypatch.setattr(sides, "available_cpus", lambda: 8)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    current = [8]  # PyTorch's count on a host of 8 cores; the process's own is not changed
    monkeypatch.setattr(torch, "get_num_threads", lambda: current[-1])
    monkeypatch.setattr(torch, "set_num_threads", current.append)
    sides.use_threads(threads)
    assert current[-1] == count  # set before either side is built: the peer's and ours


def test_more_threads_than_a_cpu_quota_allows_is_warned_of(monkeypatch):
    from resnetlab.bench import sides
    from resnetlab.errors import SettingWarning

    monkeypatch.setattr(sides, "available_cpus", lambda: 32)
    monkeypatch.setattr(sides, "usable_cpus", lambda: 2)
    monkeypatch.setattr(sides, "cpu_quota", lambda: (2.0, "cpu.max 200000 100000"))
    before = torch.get_num_threads()
    try:
        with pytest.warns(SettingWarning) as caught:
            sides.use_threads(8)
    finally:
        torch.set_num_threads(before)
    assert [str(w.message) for w in caught] == [
        "--threads 8 is more than the 2 CPUs the quota of this container allows (cpu.max "
        "200000 100000): the threads take turns, and the timings show that; give at most 2"
    ]


@pytest.mark.parametrize(("threads", "warned"), [(1, False), (2, False), (3, True)])
def test_more_threads_than_cores_is_warned_of(monkeypatch, threads, warned):
    from resnetlab.bench import sides
    from resnetlab.errors import SettingWarning

    monkeypatch.setattr(sides, "available_cpus", lambda: 2)
    monkeypatch.setattr(sides, "usable_cpus", lambda: 2)
    before = torch.get_num_threads()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sides.use_threads(threads)
        assert torch.get_num_threads() == threads  # set all the same
    finally:
        torch.set_num_threads(before)
    said = [str(w.message) for w in caught if w.category is SettingWarning]
    assert said == (
        [
            f"--threads {threads} is more than the 2 cores this process may run on: the "
            "threads take turns, and the timings show that; give at most 2"
        ]
        if warned
        else []
    )
