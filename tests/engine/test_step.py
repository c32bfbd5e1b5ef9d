import contextlib
import copy
import dataclasses
import json
import os
import warnings

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import resnetlab
from resnetlab.engine import TrainConfig, train
from resnetlab.engine import config as config_module
from resnetlab.engine import step as step_module
from resnetlab.engine.distributed import DistInfo
from resnetlab.engine.optim import set_lr
from resnetlab.engine.step import (
    GRAPH_WARMUP_STEPS,
    EmaUpdate,
    TrainStep,
    build_training,
    class_weights,
    configure_backends,
    global_state_kept,
    refuse_lone_values,
    resolve_precision,
    weighed_classes_note,
    weighed_cross_entropy,
)
from resnetlab.errors import SettingWarning, command_line

CPU = torch.device("cpu")
FAST = dict(
    model="resnet8", data="digits", input_size=8, crop_padding=1, batch_size=64, log_every=5
)


def _batch(device=CPU, size=16, batch=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    return x, y


def _run(config, device, batches, *, input_size=16):
    """Losses of consecutive steps (one per batch) and the final weights."""
    parts = build_training(config, device, num_classes=10, input_size=input_size)
    losses = []
    for x, y in batches:
        if parts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        set_lr(parts.optimizer, config.lr)
        parts.step(x, y)
        loss_sum, _ = parts.step.take_sums().tolist()
        losses.append(loss_sum / len(y))
    return losses, parts


def test_fast_path_gives_the_plain_fp32_loss():
    """Every speed option on the CPU has (bf16, channels-last, foreach, EMA) vs none of them."""
    batches = [_batch()] * 3  # the same batch, so that the steps lower its loss
    plain = TrainConfig(model="resnet20", precision="fp32", channels_last=False)
    fast = TrainConfig(model="resnet20", precision="bf16", channels_last=True, ema_decay=0.9)
    plain_losses, _ = _run(plain, CPU, batches)
    fast_losses, fast_parts = _run(fast, CPU, batches)
    assert fast_parts.channels_last and fast_parts.amp_dtype == torch.bfloat16
    assert fast_parts.optimizer.defaults["foreach"]
    # The first loss is computed from the same weights; the others after the same updates.
    assert fast_losses == pytest.approx(plain_losses, rel=2e-2)
    assert plain_losses[2] < plain_losses[0]

    # Channels-last alone changes only rounding: the same first update in float32, and
    # losses that agree closely (rounding differences grow from step to step). How closely
    # depends on the kernels the CPU library picks for each layout: with 2 or more threads
    # here both layouts ran the same ones (weights equal to 1e-7 after a step), with one
    # thread they did not, and the batch norms' backward amplified 1e-6 differences to 3.5e-4
    # in the weights and 5e-4 in the loss. A layout bug moves them by the update (up to 0.06).
    cl = TrainConfig(model="resnet20", precision="fp32", channels_last=True)
    cl_losses, _ = _run(cl, CPU, batches)
    assert cl_losses == pytest.approx(plain_losses, rel=2e-3)
    _, plain_parts = _run(plain, CPU, batches[:1])
    _, cl_parts = _run(cl, CPU, batches[:1])
    for a, b in zip(cl_parts.model.parameters(), plain_parts.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_ema_update_matches_averaged_model():
    torch.manual_seed(0)
    model = resnetlab.create_model("resnet20")
    ours = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    reference = copy.deepcopy(ours)
    update = EmaUpdate(ours, model, 0.9)
    for i in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 3, 16, 16))  # moves the BN statistics
        update()
        reference.update_parameters(model)
        assert int(ours.n_averaged) == int(reference.n_averaged) == i + 1
        expected = reference.module.state_dict()
        for name, value in ours.module.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-6)
            else:  # BN's batch counter is copied, not averaged
                assert torch.equal(value, model.state_dict()[name])


def test_cuda_graphs_need_cuda_bf16_or_fp32_and_one_process(torch_2_5):
    config = TrainConfig(model="resnet20", cuda_graphs=True)
    with (
        command_line(),
        pytest.raises(resnetlab.ResnetlabError, match="--cuda-graphs needs a CUDA device"),
    ):
        build_training(config, CPU, num_classes=10, input_size=16)
    with command_line(), pytest.raises(resnetlab.ResnetlabError) as caught:
        TrainConfig(model="resnet20", cuda_graphs=True, precision="fp16")
    assert str(caught.value).endswith(
        "use --precision bf16 (a GPU of Ampere or later; older ones emulate it: --precision fp32)"
    )
    with pytest.raises(
        resnetlab.ResnetlabError, match=r"^cuda_graphs=True cannot .* precision='fp32'\)$"
    ):
        TrainConfig(model="resnet20", cuda_graphs=True, precision="fp16")
    with pytest.raises(resnetlab.ResnetlabError, match="several processes"):
        build_training(config, CPU, num_classes=10, input_size=16, dist=DistInfo(0, 2, 0))


@pytest.mark.parametrize(
    "asked, device, precision, processes, head_epochs, version, graphed",
    [
        (None, "cuda", "auto", 1, 0, "2.5.0", True),  # the default on a GPU
        (None, "cuda", "fp32", 1, 0, "2.11.0", True),
        (None, "cpu", "auto", 1, 0, "2.11.0", False),
        (None, "mps", "auto", 1, 0, "2.11.0", False),
        (None, "cuda", "fp16", 1, 0, "2.11.0", False),  # the gradient scaler reads the device
        (None, "cuda", "auto", 2, 0, "2.11.0", False),  # torchrun
        (None, "cuda", "auto", 1, 1, "2.11.0", False),  # fine-tuning's head epoch, then all
        (None, "cuda", "auto", 1, 0, "2.4.1", False),  # no tensor learning rates yet
        (None, "cuda", "auto", 1, 0, "2.5.0a0+872d972e41", True),  # NVIDIA's containers' 2.5
        (False, "cuda", "auto", 1, 0, "2.11.0", False),
        (True, "cuda", "bf16", 1, 0, "2.11.0", True),
    ],
)
def test_cuda_graphs_wherever_the_step_can_be_captured(
    monkeypatch, asked, device, precision, processes, head_epochs, version, graphed
):
    from torch.torch_version import TorchVersion

    monkeypatch.setattr(torch, "__version__", TorchVersion(version))  # first: the config checks it
    config = TrainConfig(model="resnet20", cuda_graphs=asked, precision=precision)
    assert config_module.resolve_cuda_graphs(config, device, processes, head_epochs) is graphed


def test_cuda_graphs_asked_for_where_they_cannot_run_are_refused(torch_2_5):
    config = TrainConfig(model="resnet20", cuda_graphs=True)
    resolve = config_module.resolve_cuda_graphs
    with pytest.raises(resnetlab.ResnetlabError, match="needs a CUDA device; this run is on cpu"):
        resolve(config, "cpu")
    with command_line(), pytest.raises(resnetlab.ResnetlabError, match="add --head-epochs 0"):
        resolve(config, "cuda", head_epochs=1)
    with pytest.raises(resnetlab.ResnetlabError, match="add head_epochs=0"):
        resolve(config, "cuda", head_epochs=1)
    # Without a GPU, the default trains eagerly and says nothing of graphs.
    parts = build_training(TrainConfig(model="resnet20"), CPU, num_classes=10, input_size=16)
    assert parts.step.cuda_graphs is False


def test_cuda_graphs_need_torch_2_5(monkeypatch):
    from torch.torch_version import TorchVersion

    monkeypatch.setattr(torch, "__version__", TorchVersion("2.4.1"))
    with pytest.raises(
        resnetlab.ResnetlabError, match=r"needs torch 2\.5 or later; this is 2\.4\.1"
    ):
        TrainConfig(model="resnet20", cuda_graphs=True)


@pytest.fixture
def stubbed_graphs(monkeypatch, torch_2_5):
    """The CUDA calls of the graphed step stubbed, so that its control flow runs on the CPU:
    a capture runs the step once and a replay does nothing. Records the events ("wait",
    "capture", "replay") and the stream and mode of each capture."""
    record = {"events": [], "streams": [], "modes": []}
    events = record["events"]

    class Stream:
        def __init__(self, device=None):
            self.device = device

        def wait_stream(self, other):
            events.append("wait")

    class Graph:
        def replay(self):
            events.append("replay")

    class Capture:
        def __init__(self, graph, stream=None, capture_error_mode="global"):
            record["streams"].append(stream)
            record["modes"].append(capture_error_mode)

        def __enter__(self):
            events.append("capture")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", Capture)
    # Built as a run builds it; only the rule that refuses a CPU device is lifted.
    monkeypatch.setattr(config_module, "cuda_graphs_problem", lambda *args: None)
    return record


def test_cuda_graph_control_flow_with_the_cuda_calls_stubbed(stubbed_graphs):
    """The warm-up, capture, replay and fallback sequence, runnable without a GPU.

    The stubs run the captured step once at capture time and make replays do nothing,
    so only the sequence is checked here; the GPU tests check the numbers.
    """
    events, capture_streams = stubbed_graphs["events"], stubbed_graphs["streams"]
    capture_modes = stubbed_graphs["modes"]
    config = TrainConfig(model="resnet20", cuda_graphs=True)
    parts = build_training(config, CPU, num_classes=10, input_size=16)
    step = parts.step
    x, y = _batch()
    for _ in range(GRAPH_WARMUP_STEPS):
        step(x, y)
    assert step.graph is None and step.eager_steps == GRAPH_WARMUP_STEPS
    assert all(isinstance(g["lr"], torch.Tensor) for g in parts.optimizer.param_groups)
    step(x[:5], y[:5])  # smaller than the warm-up's: eagerly, not captured in that shape
    assert step.graph is None and step.eager_steps == GRAPH_WARMUP_STEPS + 1
    step(x, y)  # capture, then replay this batch
    step(x, y)
    assert events[-3:] == ["capture", "replay", "replay"]
    # Captured on the warm-up's stream, made on the run's device: PyTorch's default capture
    # stream is on the current GPU, which a run on cuda:1 is not.
    assert capture_streams == [step._side_stream] and step._side_stream.device == step.device
    # Not PyTorch's "global" mode, which a CUDA call from another thread breaks: a streamed
    # loader's pin-memory thread pins the next batch while the step is captured.
    assert capture_modes == ["thread_local"]
    assert step.eager_steps == GRAPH_WARMUP_STEPS + 1  # the capture itself ran nothing
    step(x[:5], y[:5])  # another shape: eagerly
    assert step.eager_steps == GRAPH_WARMUP_STEPS + 2 and events[-1] == "replay"
    static_x, _ = step._static
    assert static_x.data_ptr() != x.data_ptr() and torch.equal(static_x, x)


def test_a_batch_larger_than_the_warm_ups_is_warmed_up_before_it_is_captured(stubbed_graphs):
    """A streamed run whose warm-up batches each lost an unreadable image captured the
    first full batch, a shape never run: cuDNN timed its algorithms (and torch.compile
    compiled) inside the capture, where neither may run."""
    events = stubbed_graphs["events"]
    config = TrainConfig(model="resnet20", cuda_graphs=True)
    step = build_training(config, CPU, num_classes=10, input_size=16).step
    x, y = _batch()
    for _ in range(GRAPH_WARMUP_STEPS):
        step(x[:-1], y[:-1])
    step(x, y)  # larger than every warm-up batch: one more warm-up, in its shape
    assert step.graph is None and step.eager_steps == GRAPH_WARMUP_STEPS + 1
    assert events.count("wait") == 2 * (GRAPH_WARMUP_STEPS + 1)  # all on the side stream
    step(x, y)  # a shape warmed up: captured, then replayed
    assert events[-2:] == ["capture", "replay"]
    assert step._static[0].shape == x.shape
    step(x[:-1], y[:-1])  # the warm-up's smaller shape: eagerly
    assert step.eager_steps == GRAPH_WARMUP_STEPS + 2 and events[-1] == "replay"


@pytest.fixture
def gpu_of(monkeypatch):
    """A GPU of the given compute capability, as choosing a precision asks of it; PyTorch
    says bf16 is supported on every one (emulated before Ampere), as torch 2.4 and later do."""

    def gpu(capability):
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        return torch.device("cuda", 0)

    return gpu


@pytest.mark.parametrize(("capability", "dtype"), [((7, 5), None), ((8, 0), torch.bfloat16)])
def test_auto_precision_is_bf16_on_gpus_with_bf16_hardware(gpu_of, capability, dtype):
    # A T4 or V100 emulates bf16, slower than float32: auto chose it there.
    assert resolve_precision("auto", gpu_of(capability)) is dtype
    assert resolve_precision("bf16", gpu_of(capability)) is torch.bfloat16  # as asked


def test_set_lr_updates_a_tensor_rate_in_place():
    model = resnetlab.create_model("resnet20")
    optimizer = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    rate = optimizer.param_groups[0]["lr"]
    set_lr(optimizer, 0.5)
    assert optimizer.param_groups[0]["lr"] is rate and rate.item() == 0.5


def test_training_stops_at_the_target_accuracy(tmp_path):
    result = train(**FAST, epochs=8, target_accuracy=0.3, out=str(tmp_path / "run"))
    summary = result.summary
    assert summary["reached_target"] is True and summary["target_accuracy"] == 0.3
    assert 1 <= summary["epochs"] < 8
    assert summary["final_val_acc"] >= 0.3


@pytest.mark.slow
def test_compiled_step_gives_the_eager_loss():
    batches = [_batch(size=8, batch=8, seed=s) for s in (1, 2)]
    eager = TrainConfig(model="resnet20", precision="fp32")
    compiled = TrainConfig(model="resnet20", precision="fp32", compile=True)
    eager_losses, _ = _run(eager, CPU, batches, input_size=8)
    compiled_losses, parts = _run(compiled, CPU, batches, input_size=8)
    assert parts.net is not parts.model  # the step called the compiled module
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)


# Rates at which a few steps on random data descend steadily: AdamW at SGD's 0.1 makes the
# losses swing so far that any change of rounding (bf16, compiled kernels) moves them by 30%.
GPU_TEST_RATES = {"sgd": 0.05, "adamw": 1e-3}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graphs_bf16_fused_step_gives_the_plain_fp32_loss(optimizer, compile):
    device = torch.device("cuda")
    common = dict(model="resnet20", optimizer=optimizer, lr=GPU_TEST_RATES[optimizer])
    plain = TrainConfig(**common, precision="fp32", channels_last=False)
    eager = TrainConfig(
        **common, precision="bf16", channels_last=True, compile=compile, ema_decay=0.9
    )
    graphed = dataclasses.replace(eager, cuda_graphs=True)

    # The graph replays the eager step: the same losses, batch after batch (a replay that
    # kept the captured batch or rate would drift away from them).
    batches = [_batch(device, seed=s) for s in range(1, 8)]
    eager_losses, _ = _run(eager, device, batches)
    graphed_losses, parts = _run(graphed, device, batches)
    assert parts.optimizer.defaults["fused"]
    assert parts.step.graph is not None
    # Warm-up steps ran eagerly; the capture ran nothing; every later batch was a replay.
    assert parts.step.eager_steps == GRAPH_WARMUP_STEPS
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-2)
    assert int(parts.ema.n_averaged) == len(batches)
    last_x = batches[-1][0].contiguous(memory_format=torch.channels_last)
    assert torch.equal(parts.step._static[0], last_x)

    # bf16, channels-last, fused and graphed against plain float32, on one batch that the
    # steps learn (the first loss from the same weights, the others after the same updates).
    same = [batches[0]] * (GRAPH_WARMUP_STEPS + 2)
    plain_losses, _ = _run(plain, device, same)
    fast_losses, _ = _run(graphed, device, same)
    assert fast_losses == pytest.approx(plain_losses, rel=3e-2)
    assert plain_losses[-1] < plain_losses[0]

    # A replay reads the learning rate set before it: at 0 the weights stay put.
    before = [p.detach().clone() for p in parts.model.parameters()]
    set_lr(parts.optimizer, 0.0)
    x, y = batches[0]
    parts.step(x.contiguous(memory_format=torch.channels_last), y)
    if optimizer == "sgd":  # AdamW's decoupled decay is scaled by the rate too
        assert all(torch.equal(a, b) for a, b in zip(before, parts.model.parameters(), strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_run_a_last_batch_of_another_size_eagerly():
    device = torch.device("cuda")
    config = TrainConfig(model="resnet20", cuda_graphs=True)
    parts = build_training(config, device, num_classes=10, input_size=16)
    for seed in range(GRAPH_WARMUP_STEPS + 2):
        parts.step(*_batch(device, seed=seed))
    parts.step(*_batch(device, batch=7))
    assert parts.step.eager_steps == GRAPH_WARMUP_STEPS + 1
    loss_sum, hits = parts.step.take_sums().tolist()
    assert loss_sum > 0 and 0 <= hits <= 5 * 32 + 7


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_run_with_cuda_graphs(tmp_path):
    result = train(**FAST, epochs=2, cuda_graphs=True, device="cuda", out=str(tmp_path / "g"))
    assert result.summary["status"] == "finished" and result.summary["cuda_graphs"] is True
    assert result.summary["best_val_acc"] > 0.3
    # The default on a GPU.
    default = train(**FAST, epochs=1, device="cuda", out=str(tmp_path / "d"))
    assert default.summary["cuda_graphs"] is True


def test_train_step_is_what_the_trainer_runs(tmp_path):
    from resnetlab.engine.train import Trainer

    trainer = Trainer(TrainConfig(**FAST, epochs=1, out=str(tmp_path / "run")))
    assert isinstance(trainer.train_step, TrainStep)
    assert (
        trainer.train_step.net is trainer.net and trainer.train_step.optimizer is trainer.optimizer
    )


def test_gradient_clipping_bounds_the_update():
    # Plain SGD (no momentum, no decay, rate 1): the update is minus the gradient, so its
    # norm is the clipped gradient norm.
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = TrainStep(model, optimizer, clip_grad_norm=0.01)
    x, y = torch.randn(8, 4) * 100, torch.randint(0, 3, (8,))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    step(x, y)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() == pytest.approx(0.01, rel=1e-4)
    unclipped = TrainStep(copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=1.0))
    assert unclipped.clip_grad_norm == 0


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([10, 10], [1.0, 1.0]),  # balanced data: every image weighs the same
        ([90, 10], [100 / 180, 100 / 20]),  # the small class's images weigh nine times more
        ([6, 3, 1], [10 / 18, 10 / 9, 10 / 3]),
        ([8, 0, 2], [10 / 24, 1.0, 10 / 6]),  # no images of a class: its weight is unused
    ],
)
def test_balanced_class_weights_are_scikit_learns(counts, expected):
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    weights = class_weights("balanced", counts, CPU)
    assert weights.tolist() == pytest.approx(expected)
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    present = [c for c, n in enumerate(counts) if n]
    theirs = compute_class_weight("balanced", classes=np.array(present), y=np.array(labels))
    if len(present) == len(counts):
        assert weights.tolist() == pytest.approx(theirs.tolist())
    assert class_weights("none", counts, CPU) is None


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_step_weighs_each_images_loss_by_its_class(smoothing):
    # One image of class 1 among seven of class 0: the weighted mean, each image's loss
    # (smoothed or not) times its class's weight, over the sum of the weights.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.tensor([0] * 7 + [1])
    weights = class_weights("balanced", [70, 10], CPU)
    with torch.no_grad():
        logits = model(x)
    each = torch.nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
    by_hand = (each * weights[y]).sum() / weights[y].sum()
    step = TrainStep(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        class_weights=weights,
        label_smoothing=smoothing,
    )
    step(x, y)
    assert step.take_sums()[0].item() / len(y) == pytest.approx(by_hand.item(), rel=1e-6)
    with command_line():
        note = weighed_classes_note(["cat", "dog"], [70, 10])
    assert note == (
        "each class weighs in the loss in inverse proportion to its training images "
        "(--class-weights balanced): 'dog' x4.00, 'cat' x0.57"
    )


def test_balanced_weights_with_label_smoothing_keep_each_image_on_its_own_class():
    """At 99:1, the loss of an image of the large class is least where it answers its own
    class, as without weights; torch's per-class weights with smoothing would move it to
    84% on the small class."""
    weights = class_weights("balanced", [990, 10], CPU)
    y = torch.tensor([0] * 99 + [1])
    p_small = torch.linspace(0.01, 0.99, 99)
    losses = []
    for p in p_small:  # the same answer for every image of the large class
        logits = torch.log(torch.tensor([1 - p, p])).repeat(100, 1)
        logits[-1] = torch.tensor([-5.0, 5.0])  # the small class's image, answered right
        losses.append(weighed_cross_entropy(logits, y, weights, 0.1).item())
    best = p_small[int(torch.tensor(losses).argmin())].item()
    assert best < 0.1  # 0.05, the smoothing's share of the other class


def test_training_with_balanced_class_weights_records_and_says_them(tmp_path, capsys, monkeypatch):
    weights = []
    init = TrainStep.__init__

    def kept(self, *args, **kwargs):
        init(self, *args, **kwargs)
        weights.append(self.class_weights)

    monkeypatch.setattr(TrainStep, "__init__", kept)
    config = TrainConfig(
        **FAST, max_steps=2, warmup_steps=1, class_weights="balanced", out=str(tmp_path / "r")
    )
    train(config)
    assert TrainConfig.load(tmp_path / "r" / "config.json")["class_weights"] == "balanced"
    assert "data: each class weighs in the loss" in capsys.readouterr().err
    (used,) = weights  # digits' training images per class, weighed as class_weights says
    counts = torch.bincount(resnetlab.data.load_dataset("digits", val_split=0.2).train.labels)
    assert used.tolist() == pytest.approx(class_weights("balanced", counts.tolist(), CPU).tolist())


def test_a_batch_of_one_that_reaches_1x1_maps_is_refused_before_training():
    # ResNet-18 at 32x32 ends in 1x1 maps: one image gives BatchNorm one value per channel.
    config = TrainConfig(model="resnet18", batch_size=1, device="cpu")
    with (
        command_line(),
        pytest.raises(resnetlab.ResnetlabError, match=r"^--batch-size 1: resnet18 at 32x32"),
    ):
        build_training(config, torch.device("cpu"), num_classes=10, input_size=32)
    refuse_lone_values(config, num_classes=10, input_size=64)  # 2x2 maps: four values
    refuse_lone_values(dataclasses.replace(config, batch_size=2), num_classes=10, input_size=32)


@pytest.mark.parametrize("weights, best", [("none", 1), ("balanced", 2)])
def test_balanced_class_weights_pick_the_epoch_of_the_best_balanced_accuracy(
    tmp_path, monkeypatch, capsys, weights, best
):
    from resnetlab.engine.evaluate import EvalResult
    from resnetlab.engine.train import Trainer

    # 91 images of class 0 and one of each other: epoch 1 answers 0 everywhere (accuracy
    # 0.91, balanced 0.1), epoch 2 misses ten of class 0 (0.90, balanced 0.989).
    first, second = torch.zeros(10, 10, dtype=torch.int64), torch.zeros(10, 10, dtype=torch.int64)
    first[:, 0] = torch.tensor([91] + [1] * 9)
    second[0, 0], second[0, 1] = 81, 10
    second[torch.arange(1, 10), torch.arange(1, 10)] = 1
    results = iter(
        EvalResult(loss=1.0, accuracy=c.diag().sum().item() / 100, count=100, confusion=c)
        for c in (first, second)
    )
    monkeypatch.setattr(Trainer, "_evaluate", lambda self: next(results))
    config = TrainConfig(
        **FAST,
        subset=320,  # 5 steps an epoch: its validations are scripted
        epochs=2,
        warmup_steps=1,
        class_weights=weights,
        target_accuracy=0.95,  # the accuracy's, which neither epoch reaches
        out=str(tmp_path / "r"),
    )
    summary = json.loads((train(config).run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == best and summary["reached_target"] is False
    metric = "balanced accuracy" if weights == "balanced" else "accuracy"
    assert summary["best_metric"] == metric
    expected = (81 / 91 + 9) / 10 if weights == "balanced" else 0.91
    assert summary["best_val_acc"] == pytest.approx(expected)
    said = "best val balanced acc" if weights == "balanced" else "best val acc"
    assert f"{said} {expected:.4f} (epoch {best})" in capsys.readouterr().out


def test_class_weights_cannot_change_on_resume(tmp_path):
    run = tmp_path / "r"
    train(TrainConfig(**FAST, epochs=2, max_steps=1, warmup_steps=1, out=str(run)))
    with pytest.raises(resnetlab.ResnetlabError, match="its class_weights cannot change"):
        train(resume=run, class_weights="balanced")  # its best epoch was picked otherwise


def test_a_ctrl_c_stays_a_ctrl_c_when_restoring_the_global_state_fails(monkeypatch):
    # A Ctrl-C inside PyTorch's lazy import of torch._dynamo leaves it half-imported, and
    # use_deterministic_algorithms, which imports torch._inductor, then raises ImportError.
    def half_imported(*args, **kwargs):
        raise ImportError("cannot import name '_inductor' from 'torch'")

    with pytest.raises(KeyboardInterrupt), global_state_kept():
        monkeypatch.setattr(torch, "use_deterministic_algorithms", half_imported)
        raise KeyboardInterrupt
    monkeypatch.undo()
    with pytest.raises(ImportError), global_state_kept():  # with nothing else on its way
        monkeypatch.setattr(torch, "use_deterministic_algorithms", half_imported)
    monkeypatch.undo()  # before the fixtures that restore PyTorch's settings


def test_deterministic_cuda_runs_fix_cublas_workspace_unless_the_user_did(monkeypatch):
    # cuBLAS stays non-deterministic (PyTorch only warns) without a fixed workspace, which
    # the environment must give before cuBLAS starts. Nothing here touches a GPU.
    with global_state_kept():
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        configure_backends(torch.device("cpu"), deterministic=True)
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        configure_backends(torch.device("cuda"), deterministic=False)
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        configure_backends(torch.device("cuda"), deterministic=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        configure_backends(torch.device("cuda"), deterministic=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_bf16_named_for_a_gpu_without_it_is_warned_about(monkeypatch):
    # A T4 or a V100 (compute capability 7.x) emulates bf16; auto takes fp32 there.
    monkeypatch.setattr(step_module, "cuda_has_bf16", lambda device: False)
    gpu = torch.device("cuda")
    with pytest.warns(SettingWarning, match=r"^precision='bf16': cuda has no bf16 arithmetic"):
        assert resolve_precision("bf16", gpu) is torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", gpu) is None and resolve_precision("fp16", gpu)
        monkeypatch.setattr(step_module, "cuda_has_bf16", lambda device: True)
        assert resolve_precision("bf16", gpu) is torch.bfloat16
