"""The progress meter on a fake clock: throughput, the compilation window, ETA, epoch times."""

import pytest

from cervix_jax.train.progress import ProgressMeter, format_duration


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _meter(clock, lines, start_step=0):
    return ProgressMeter(
        num_epochs=2,
        total_steps=12,
        batch_size=8,
        start_step=start_step,
        clock=clock,
        emit=lines.append,
    )


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0m00s"), (59.9, "0m59s"), (65, "1m05s"), (3725, "1h02m05s"), (-3, "0m00s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_lines_throughput_and_eta():
    clock, lines = FakeClock(), []
    meter = _meter(clock, lines)
    meter.begin_epoch(0)
    clock.now += 10.0  # steps 1-2, compiling: 16 images in 10 s, no rate for an ETA yet
    line = meter.log_step(1, 2, loss=1.23456, accuracy=0.5)
    assert line == "epoch 1/2 step 2/12 loss 1.2346 acc 0.500 1.6 img/s (incl. compilation) ETA ?"
    clock.now += 2.0  # steps 3-4 in 2 s: 8 img/s; 1 step/s leaves 8 steps = 8 s
    assert (
        meter.log_step(1, 4, 0.5, 0.25)
        == "epoch 1/2 step 4/12 loss 0.5000 acc 0.250 8.0 img/s ETA 0m08s"
    )
    clock.now += 4.0  # steps 5-6 in 4 s: 4 img/s; 4 steps in 6 s leave 6 steps = 9 s
    assert meter.log_step(1, 6, 0.5, 0.25).endswith(" 4.0 img/s ETA 0m09s")
    assert meter.epoch_seconds() == pytest.approx(16.0)
    record = {
        "epoch": 1,
        "train_loss": 0.75,
        "train_accuracy": 0.3,
        "val_loss": 0.8125,
        "val_accuracy": 0.25,
        "epoch_seconds": 16.0,
    }
    assert meter.log_epoch(record) == (
        "epoch 1: train loss 0.7500 acc 0.300 | val loss 0.8125 acc 0.250 | 16.0s"
    )
    clock.now += 30.0  # validation and checkpoint: not part of any window
    meter.begin_epoch(6)
    clock.now += 6.0  # steps 7-12 in 6 s: 8 img/s; 10 steps in 12 s, none left
    assert meter.log_step(2, 12, 0.1, 1.0).endswith(" 8.0 img/s ETA 0m00s")
    assert meter.epoch_seconds() == pytest.approx(6.0)
    assert meter.elapsed() == pytest.approx(52.0)
    assert lines == [
        "epoch 1/2 step 2/12 loss 1.2346 acc 0.500 1.6 img/s (incl. compilation) ETA ?",
        "epoch 1/2 step 4/12 loss 0.5000 acc 0.250 8.0 img/s ETA 0m08s",
        "epoch 1/2 step 6/12 loss 0.5000 acc 0.250 4.0 img/s ETA 0m09s",
        "epoch 1: train loss 0.7500 acc 0.300 | val loss 0.8125 acc 0.250 | 16.0s",
        "epoch 2/2 step 12/12 loss 0.1000 acc 1.000 8.0 img/s ETA 0m00s",
    ]


def test_a_resumed_run_labels_its_own_first_window():
    clock, lines = FakeClock(), []
    meter = _meter(clock, lines, start_step=6)
    meter.begin_epoch(6)
    clock.now += 20.0
    assert "(incl. compilation) ETA ?" in meter.log_step(2, 8, 0.1, 1.0)
    clock.now += 1.0  # 2 steps in 1 s, the compilation window left out: 2 steps left = 1 s
    assert meter.log_step(2, 10, 0.1, 1.0).endswith(" 16.0 img/s ETA 0m01s")
