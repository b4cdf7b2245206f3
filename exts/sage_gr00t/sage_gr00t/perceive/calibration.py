"""Image colour and intensity calibration of a target camera domain onto the source domain a policy was trained in.

Fitted from frames of the target domain alone plus summary statistics of source frames (no paired images, no
ground truth: what a real robot can have, a few frames of its own camera and the statistics of the training
data). Three models, each a map from target pixel values to source pixel values:

    affine      per channel: x -> a_c x + b_c, matching each channel's mean and standard deviation
    linear      a 3x3 colour matrix + offset: the optimal-transport (Monge-Kantorovich) linear map between the
                two colour distributions taken as Gaussians (mean + covariance); it mixes channels (a tint, a
                white-balance or saturation change), the symmetric positive-definite map of least displacement
    histogram   per channel: monotone lookup table matching the quantiles of the two distributions (also undoes
                a gamma / tone-curve difference, which no affine map can)

A per-channel affine distortion of the target (gain and offset per channel) is undone exactly by all three (up to
the clipping of saturated pixels). `ColourStats` are small and JSON-serializable, so the source statistics can be
shipped with a policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

CALIBRATION_MODES = ("affine", "linear", "histogram")
QUANTILES = 257  # quantile levels kept per channel (histogram mode)


def _pixels(frames: Iterable[np.ndarray]) -> np.ndarray:
    stacked = [np.asarray(f).reshape(-1, 3) for f in frames]
    if not stacked:
        raise ValueError("Colour calibration needs at least one frame.")
    return np.concatenate(stacked).astype(np.float64)


@dataclass(frozen=True)
class ColourStats:
    """Colour statistics of a set of uint8 RGB frames: mean, covariance and per-channel quantiles."""

    mean: np.ndarray  # (3,)
    cov: np.ndarray  # (3, 3)
    quantiles: np.ndarray  # (3, QUANTILES): channel values at levels linspace(0, 1, QUANTILES)
    frames: int = 0

    @classmethod
    def of_frames(cls, frames: Iterable[np.ndarray]) -> ColourStats:
        frames = list(frames)
        px = _pixels(frames)
        levels = np.linspace(0.0, 1.0, QUANTILES)
        return cls(px.mean(0), np.cov(px, rowvar=False), np.quantile(px, levels, axis=0).T, len(frames))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(), "quantiles": self.quantiles.tolist(),
                "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict) -> ColourStats:
        return cls(np.asarray(data["mean"], float), np.asarray(data["cov"], float),
                   np.asarray(data["quantiles"], float), int(data.get("frames", 0)))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _inv_sqrtm_psd(matrix: np.ndarray, floor: float) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors / np.sqrt(np.clip(values, floor, None))) @ vectors.T


@dataclass
class ColourCalibration:
    """A fitted target -> source colour map; `apply(image)` maps a uint8 RGB frame (any leading shape)."""

    mode: str = "affine"
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))  # affine / linear: x -> matrix @ x + offset
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    lut: np.ndarray | None = None  # histogram: (3, 256) uint8 per channel

    @classmethod
    def identity(cls) -> ColourCalibration:
        return cls()

    @classmethod
    def fit(cls, target_frames: Iterable[np.ndarray], source: ColourStats, mode: str = "affine",
            max_gain: float = 4.0) -> ColourCalibration:
        """Fit from target frames alone and the source's statistics. `max_gain` bounds the per-channel gain (and
        the colour matrix's eigenvalues): a target channel with almost no spread must not be blown up."""
        if mode not in CALIBRATION_MODES:
            raise ValueError(f"Unknown calibration mode {mode!r}; use one of {CALIBRATION_MODES}.")
        target = ColourStats.of_frames(target_frames)
        if mode == "histogram":
            levels = np.arange(256, dtype=np.float64)
            lut = np.stack([np.interp(levels, *_monotone(target.quantiles[c], source.quantiles[c])) for c in range(3)])
            return cls(mode, lut=np.clip(np.rint(lut), 0, 255).astype(np.uint8))
        if mode == "affine":
            std_t = np.sqrt(np.clip(np.diag(target.cov), 1e-6, None))
            std_s = np.sqrt(np.clip(np.diag(source.cov), 0.0, None))
            gain = np.clip(std_s / std_t, 1.0 / max_gain, max_gain)
            matrix = np.diag(gain)
        else:  # linear: T = St^-1/2 (St^1/2 Ss St^1/2)^1/2 St^-1/2 maps N(mt, St) onto N(ms, Ss)
            floor = 1e-3 * max(float(np.trace(target.cov)) / 3, 1e-6)
            half = _sqrtm_psd(target.cov)
            inv_half = _inv_sqrtm_psd(target.cov, floor)
            matrix = inv_half @ _sqrtm_psd(half @ source.cov @ half) @ inv_half
            values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
            matrix = (vectors * np.clip(values, 1.0 / max_gain, max_gain)) @ vectors.T
        return cls(mode, matrix, source.mean - matrix @ target.mean)

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if self.mode == "histogram":
            assert self.lut is not None
            return np.stack([self.lut[c][image[..., c]] for c in range(3)], axis=-1)
        mapped = image.astype(np.float32) @ self.matrix.T.astype(np.float32) + self.offset.astype(np.float32)
        return np.clip(np.rint(mapped), 0, 255).astype(np.uint8)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "matrix": self.matrix.tolist(), "offset": self.offset.tolist(),
                "lut": None if self.lut is None else self.lut.tolist()}


def _monotone(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantile pairs (x target, y source) as an increasing interpolation table: repeated target values (a flat
    region of many equal pixels) keep the mean of their source values."""
    keys, inverse = np.unique(np.asarray(x, float), return_inverse=True)
    values = np.bincount(inverse, weights=np.asarray(y, float)) / np.bincount(inverse)
    return keys, np.maximum.accumulate(values)
