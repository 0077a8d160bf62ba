"""Simulated digital holograms for autofocus as regression (``--data holo-sim[:N]``), after
the tiny-transformer autofocus of digital holographic microscopy (DHM): the target is
the distance from the object to the recording plane, over a 92 µm axial range.

Each sample: a patterned object (bars, discs and a grating at random positions, as an
amplitude and phase mask), its field propagated by the angular spectrum method

    U(z) = F^-1{ F{U0} exp(i 2 pi z sqrt(1 / lambda^2 - fx^2 - fy^2)) }

(evanescent frequencies zeroed), recorded as the intensity ``|U(z) + R|^2`` with a tilted
plane reference ``R = exp(i 2 pi (fx0 x + fy0 y))`` (off-axis holography), normalised to
[0, 1], with Gaussian read noise. The field is simulated at twice the recorded size and
cropped, so that the FFT's periodic wrap stays outside the hologram.

Optics (:data:`OPTICS`): 633 nm (HeNe), 1 µm pixels at the object (a 3.45 µm camera pixel
behind about 3.5x), a 92 µm range of distances starting 8 µm from focus. The depth of
field of such a DHM (lambda / NA^2 at NA 0.2) is about 15 µm; the published tiny ViTs
reach errors below 0.3 µm on simulated holograms. The samples are a function of the seed:
the same spec gives the same dataset on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OPTICS", "Optics", "angular_spectrum", "simulate_holograms"]


@dataclass(frozen=True)
class Optics:
    """The simulated microscope (lengths in µm)."""

    wavelength: float = 0.633
    pixel: float = 1.0
    z_min: float = 8.0
    z_range: float = 92.0
    carrier: tuple[float, float] = (0.19, 0.13)  # the reference's tilt, cycles per pixel
    noise: float = 0.01  # read noise, in units of the hologram's range


OPTICS = Optics()


def angular_spectrum(field: np.ndarray, z: np.ndarray, wavelength: float, pixel: float) -> np.ndarray:
    """Fields ``(N, S, S)`` complex propagated by distances ``z`` (N,) (µm), evanescent
    frequencies removed."""
    size = field.shape[-1]
    f = np.fft.fftfreq(size, d=pixel)
    fx, fy = np.meshgrid(f, f, indexing="xy")
    arg = 1.0 / wavelength**2 - fx**2 - fy**2
    kz = 2 * np.pi * np.sqrt(np.maximum(arg, 0.0))
    transfer = np.exp(1j * z[:, None, None] * kz[None]) * (arg > 0)[None]
    return np.fft.ifft2(np.fft.fft2(field) * transfer)


def _objects(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random patterned objects: amplitude in [0.2, 1] and phase in [0, 1.5] rad of bars,
    discs and a grating, ``(n, size, size)`` complex."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    amplitude = np.ones((n, size, size))
    phase = np.zeros((n, size, size))
    for i in range(n):
        for _ in range(rng.integers(2, 5)):  # bars
            cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
            w, h = rng.uniform(1.5, size * 0.12), rng.uniform(size * 0.1, size * 0.3)
            if rng.random() < 0.5:
                w, h = h, w
            inside = (np.abs(xx - cx) < w / 2) & (np.abs(yy - cy) < h / 2)
            amplitude[i][inside] *= rng.uniform(0.2, 0.7)
        for _ in range(rng.integers(1, 4)):  # discs
            cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < rng.uniform(1.0, size * 0.08) ** 2
            phase[i][inside] += rng.uniform(0.3, 1.5)
        period, angle = rng.uniform(3.0, 8.0), rng.uniform(0, np.pi)  # a small grating
        cx, cy = rng.uniform(size * 0.35, size * 0.65, 2)
        patch = (np.abs(xx - cx) < size * 0.08) & (np.abs(yy - cy) < size * 0.08)
        stripes = np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0
        amplitude[i][patch & stripes] *= 0.5
    return amplitude * np.exp(1j * phase)


def simulate_holograms(n: int, size: int = 32, seed: int = 0, optics: Optics = OPTICS
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` holograms ``(n, size, size)`` float32 in [0, 1] and their distances ``(n,)``
    in µm (uniform over ``[z_min, z_min + z_range]``)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(optics.z_min, optics.z_min + optics.z_range, n)
    big = 2 * size
    holograms = np.empty((n, size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    reference = np.exp(2j * np.pi * (optics.carrier[0] * xx + optics.carrier[1] * yy))
    lo = size // 2
    for start in range(0, n, 256):  # bounded memory: 256 fields at a time
        stop = min(n, start + 256)
        field = angular_spectrum(_objects(stop - start, big, rng), z[start:stop], optics.wavelength, optics.pixel)
        intensity = np.abs(field[:, lo:lo + size, lo:lo + size] + reference) ** 2
        intensity += rng.normal(0.0, optics.noise * 4.0, intensity.shape)  # |U + R|^2 spans about [0, 4]
        holograms[start:stop] = np.clip(intensity / 4.0, 0.0, 1.0)
    return holograms, z.astype(np.float32)
