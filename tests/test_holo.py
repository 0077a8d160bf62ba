"""Simulated holograms (secvit.holo) and regression (secvit.task): the angular spectrum
method against hand-computed plane waves, the dataset's reproducibility and ranges, and a
small regressor trained on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from secvit import cli
from secvit.checkpoint import load_model
from secvit.data import load_dataset
from secvit.errors import UsageError
from secvit.holo import OPTICS, angular_spectrum, simulate_holograms
from secvit.task import RegressionTarget, regression_loss
from secvit.train import TrainConfig, evaluate, train


def test_a_plane_wave_gains_the_phase_of_its_axial_wavenumber():
    size, pixel, wavelength, z = 16, 1.0, 0.633, 25.0
    x = np.arange(size) * pixel
    fx = 3 / (size * pixel)  # an FFT frequency: the wave is periodic on the grid
    wave = np.exp(2j * np.pi * fx * x)[None, None, :].repeat(size, 1)
    out = angular_spectrum(wave, np.array([z]), wavelength, pixel)
    expected = wave * np.exp(2j * np.pi * z * np.sqrt(1 / wavelength**2 - fx**2))
    assert np.abs(out - expected).max() < 1e-12


def test_evanescent_waves_are_removed_and_propagation_is_reversible():
    rng = np.random.default_rng(0)
    field = np.exp(1j * rng.uniform(0, 2 * np.pi, (2, 32, 32)))
    fine = angular_spectrum(field, np.array([10.0, 10.0]), 0.633, 0.2)  # 0.2 µm pixels: up to 2.5 cycles/µm
    spectrum = np.abs(np.fft.fft2(fine))
    f = np.fft.fftfreq(32, d=0.2)
    fx, fy = np.meshgrid(f, f)
    assert spectrum[:, fx**2 + fy**2 >= 1 / 0.633**2].max() < 1e-9
    coarse = angular_spectrum(field, np.array([40.0, -7.0]), 0.633, 1.0)  # every frequency propagates
    back = angular_spectrum(coarse, np.array([-40.0, 7.0]), 0.633, 1.0)
    assert np.abs(back - field).max() < 1e-12
    assert np.allclose((np.abs(coarse) ** 2).sum((1, 2)), (np.abs(field) ** 2).sum((1, 2)))  # energy kept


def test_holograms_are_reproducible_in_range_and_depend_on_the_distance():
    x, z = simulate_holograms(40, size=16, seed=3)
    x2, z2 = simulate_holograms(40, size=16, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(z, z2)
    assert x.shape == (40, 16, 16) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert OPTICS.z_min <= z.min() and z.max() <= OPTICS.z_min + OPTICS.z_range
    assert not np.array_equal(simulate_holograms(40, size=16, seed=4)[0], x)
    # the fringes carry the reference's carrier: its frequency dominates the spectrum off DC
    spectrum = np.abs(np.fft.fft2(x - x.mean((1, 2), keepdims=True))).mean(0)
    peak = np.unravel_index(spectrum.argmax(), spectrum.shape)
    carrier = {(round(OPTICS.carrier[1] * 16) % 16, round(OPTICS.carrier[0] * 16) % 16),
               (-round(OPTICS.carrier[1] * 16) % 16, -round(OPTICS.carrier[0] * 16) % 16)}
    assert tuple(int(i) for i in peak) in carrier


def test_holo_sim_is_regression_data_in_the_models_shape():
    data = load_dataset("holo-sim:60", 16, 3)
    assert data.regression and data.unit == "µm" and data.num_classes == 1
    assert data.x_train.shape == (50, 3, 16, 16) and data.x_test.shape == (10, 3, 16, 16)
    assert data.y_train.dtype == torch.float32 and float(data.y_test.min()) >= OPTICS.z_min
    with pytest.raises(UsageError, match="holo-sim:N takes a number"):
        load_dataset("holo-sim:many", 16, 3)


def test_a_regressor_trains_on_holograms_and_reports_its_error_in_micrometres(tmp_path):
    cfg = TrainConfig(model="vit_lite_2_2_32", data="holo-sim:600", epochs=10, batch_size=32, lr=2e-3,
                      warmup_epochs=1, shift=0)
    meta = train(cfg, tmp_path / "holo")
    assert meta["num_classes"] == 1 and meta["target"]["unit"] == "µm" and "test_accuracy" not in meta
    model, loaded = load_model(tmp_path / "holo")
    data = load_dataset("holo-sim:600", 32, 3)
    target = RegressionTarget.from_dict(loaded.extra["target"])
    assert abs(evaluate(model, loaded.normalization.apply(data.x_test), data.y_test, target=target)
               - meta["test_mae"]) < 1e-4
    constant = float((data.y_test - data.y_train.mean()).abs().mean())  # predicting the mean distance
    assert meta["test_mae"] < 0.8 * constant, (meta["test_mae"], constant)  # measured: 15.2 µm
    with pytest.raises(UsageError, match="regression data"):
        train(TrainConfig(model="vit_lite_1_2_16", data="holo-sim:60", epochs=1, pwca=True), tmp_path / "x")


def test_regression_target_round_trips_and_losses_are_on_the_standardised_scale():
    target = RegressionTarget.fit(torch.tensor([10.0, 20.0, 30.0]), "µm")
    assert (target.mean, target.std) == (20.0, 10.0)
    assert torch.equal(target.decode(torch.tensor([[1.0], [-2.0]])), torch.tensor([30.0, 0.0]))
    out, y = torch.tensor([[0.5], [-1.0]]), torch.tensor([20.0, 20.0])  # standardised targets: 0, 0
    assert float(regression_loss("l1", out, y, target)) == 0.75
    assert float(regression_loss("mse", out, y, target)) == 0.625
    assert RegressionTarget.from_dict(target.to_dict()) == target
    assert target.agrees(torch.tensor([5.0, 5.0]), torch.tensor([5.09, 5.11])).tolist() == [True, False]  # 0.1 = 1% of 10


def test_check_and_demo_report_a_regressors_errors_in_micrometres_under_mpc(tmp_path, capsys):
    train(TrainConfig(model="vit_lite_1_2_16", data="holo-sim:60", epochs=1, batch_size=16, warmup_epochs=1,
                      shift=0), tmp_path / "holo")
    report_path = tmp_path / "check.json"
    assert cli.main(["check", "--checkpoint", str(tmp_path / "holo"), "--n", "10", "--mpc-n", "2",
                     "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["task"] == "regression" and report["unit"] == "µm" and "accuracy" not in report
    assert set(report["mae"]) == {"original", "reference", "emulation", "mpc"}
    assert report["agreement_mpc_vs_reference"] == 1.0
    assert report["error_mpc_vs_reference"]["max"] < 0.27  # µm: 1% of the distances' std
    assert "MAE (µm)" in capsys.readouterr().out
    demo = tmp_path / "demo.json"
    assert cli.main(["demo", "--checkpoint", str(tmp_path / "holo"), "--data", "holo-sim:60", "--json", str(demo)]) == 0
    assert "|diff| (µm)" in capsys.readouterr().out
    summary = json.loads(demo.read_text())
    assert summary["unit"] == "µm" and summary["agreement"] == 1.0
    row = summary["per_image"][0]
    assert isinstance(row["mpc"], float) and abs(row["mpc"] - row["plaintext"]) < 0.27 and row["agrees"]


def test_shipped_regressor_scores_what_its_meta_says():
    """The shipped holo-sim regressor: its test MAE on the 1,000 test holograms, recomputed
    on the saved weights, is what meta.json records, far below the constant prediction's."""
    model, meta = load_model("checkpoints/vit_lite_2_2_32-holo")
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    target = RegressionTarget.from_dict(meta.extra["target"])
    mae = evaluate(model, meta.normalization.apply(data.x_test), data.y_test, target=target)
    assert len(data.x_test) == meta.extra["test_images"] == 1000
    assert mae == pytest.approx(meta.extra["test_mae"], abs=1e-4) and mae < 8.0
    assert float((data.y_test - data.y_train.mean()).abs().mean()) > 2.5 * mae
