"""Synthetic Sentinel-2 L2A-like time series (pure numpy; SYNTHETIC data, not real imagery).

Why synthetic: there is no network here or in CI, and a generator with known truth lets tests and
training vary land cover, phenology, clouds and radiometry at will. The statistics follow real L2A
data: per-class spectra of the 12 L2A bands, crop/forest/grass phenology, per-date atmospheric
residuals, fractal clouds with optical thickness, thin cirrus, displaced cloud shadows, orbit-edge
nodata, and a date-wise cloud cover that is bimodal like real series (many clear dates, many
overcast ones, fewer partly cloudy: cf. the 68 real s2cloudless masks in ``../shared/data``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import L2A_BANDS

__all__ = ["SyntheticScene", "simulate_scene", "fractal_noise", "CLASS_NAMES", "native_resolution"]

CLASS_NAMES = ("water", "forest", "cropland", "grassland", "urban", "bare")

# Typical L2A surface reflectance, bands B01..B12 (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12).
_SPEC = {
    "water": [0.055, 0.050, 0.045, 0.030, 0.025, 0.020, 0.018, 0.015, 0.013, 0.010, 0.006, 0.004],
    "forest_on": [0.025, 0.028, 0.050, 0.028, 0.080, 0.230, 0.290, 0.310, 0.320, 0.300, 0.150, 0.070],
    "forest_off": [0.035, 0.040, 0.060, 0.060, 0.090, 0.140, 0.160, 0.170, 0.180, 0.170, 0.180, 0.100],
    "crop_on": [0.030, 0.032, 0.070, 0.030, 0.100, 0.300, 0.380, 0.420, 0.430, 0.400, 0.200, 0.090],
    "soil": [0.070, 0.080, 0.110, 0.140, 0.160, 0.180, 0.200, 0.210, 0.220, 0.220, 0.300, 0.240],
    "grass_on": [0.035, 0.040, 0.075, 0.050, 0.110, 0.250, 0.300, 0.330, 0.340, 0.320, 0.220, 0.120],
    "grass_off": [0.050, 0.060, 0.085, 0.090, 0.120, 0.170, 0.190, 0.200, 0.210, 0.200, 0.250, 0.170],
    "urban": [0.090, 0.100, 0.120, 0.130, 0.150, 0.170, 0.180, 0.190, 0.200, 0.200, 0.220, 0.190],
    "bare": [0.080, 0.100, 0.140, 0.180, 0.210, 0.240, 0.260, 0.270, 0.280, 0.280, 0.340, 0.280],
    "cloud": [0.470, 0.460, 0.450, 0.450, 0.460, 0.470, 0.470, 0.470, 0.470, 0.380, 0.330, 0.230],
    "cirrus": [0.200, 0.190, 0.180, 0.170, 0.170, 0.170, 0.165, 0.160, 0.160, 0.120, 0.150, 0.110],
}
SPECTRA = {k: np.asarray(v, dtype=np.float32) for k, v in _SPEC.items()}


@dataclass(frozen=True)
class SyntheticScene:
    """One simulated series on a 10 m grid (SYNTHETIC)."""

    dates: np.ndarray
    """Acquisition dates, ``datetime64[D]``, shape (T,)."""
    surface: np.ndarray
    """Cloud-free surface reflectance (T, 12, H, W) float32: the truth."""
    observed: np.ndarray
    """What the satellite sees: surface + clouds + shadows, NaN where no data, (T, 12, H, W)."""
    scl: np.ndarray
    """Scene classification (T, H, W) uint8 with ESA SCL codes."""
    cloud_alpha: np.ndarray
    """Cloud opacity 0..1 (T, H, W); what SCL tries to classify."""
    land_cover: np.ndarray
    """Class index into ``CLASS_NAMES`` (H, W)."""
    bands: tuple[str, ...] = L2A_BANDS


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float, stretch: float = 1.0) -> np.ndarray:
    """Gaussian random field with power spectrum ~ f^-beta, scaled to zero mean and unit std.

    ``stretch`` > 1 elongates features along x (cirrus streaks).
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :] / stretch
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    phase = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    field = np.fft.irfft2(amp * phase, s=(h, w))
    field -= field.mean()
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _land_cover(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Parcels (Voronoi cells) with classes drawn from a smooth landscape field; returns (class, parcel id)."""
    n_parcels = max(8, int(h * w / rng.uniform(250, 900)))
    seeds = rng.uniform(0, [h, w], size=(n_parcels, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    # Jitter coordinates so parcel borders are not perfectly straight.
    jy = yy + 2.0 * fractal_noise(rng, (h, w), 3.0)
    jx = xx + 2.0 * fractal_noise(rng, (h, w), 3.0)
    parcel = _nearest_seed(np.stack([jy.ravel(), jx.ravel()], 1), seeds).reshape(h, w)
    landscape = fractal_noise(rng, (h, w), 3.2)
    seed_val = landscape[np.clip(seeds[:, 0].astype(int), 0, h - 1), np.clip(seeds[:, 1].astype(int), 0, w - 1)]
    mix = rng.dirichlet([0.6, 2.0, 3.0, 2.0, 0.8, 0.4])  # water forest crop grass urban bare
    qs = np.quantile(seed_val, np.cumsum(mix)[:-1])
    parcel_class = np.searchsorted(qs, seed_val)
    # Water follows the lowest landscape values as connected bodies, not parcel shapes.
    cls = parcel_class[parcel]
    water = landscape < np.quantile(landscape, mix[0] * 0.8)
    cls = np.where(water, 0, np.where(cls == 0, 3, cls))
    return cls.astype(np.uint8), parcel


def _nearest_seed(points: np.ndarray, seeds: np.ndarray, block: int = 8192) -> np.ndarray:
    """Index of the nearest seed for every point (brute force in blocks; numpy only)."""
    out = np.empty(len(points), np.int64)
    s2 = (seeds**2).sum(1)
    for i in range(0, len(points), block):
        p = points[i : i + block]
        out[i : i + block] = np.argmin(s2[None] - 2 * p @ seeds.T, axis=1)
    return out


def _upsample_linear(a: np.ndarray, f: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor on the last two axes (pixel-centre aligned)."""
    for axis in (-2, -1):
        n = a.shape[axis]
        src = (np.arange(n * f) + 0.5) / f - 0.5
        i0 = np.clip(np.floor(src).astype(int), 0, n - 1)
        i1 = np.clip(i0 + 1, 0, n - 1)
        wgt = np.clip(src - i0, 0, 1)
        shape = [1] * a.ndim
        shape[axis] = -1
        a = np.take(a, i0, axis=axis) * (1 - wgt.reshape(shape)) + np.take(a, i1, axis=axis) * wgt.reshape(shape)
    return a


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _greenness(doy: np.ndarray, up: np.ndarray, down: np.ndarray, width: float = 12.0) -> np.ndarray:
    """Double-logistic phenology in [0, 1] (green-up at ``up``, senescence at ``down``)."""
    return _logistic((doy - up) / width) * _logistic((down - doy) / width)


def _cloud_cover_draw(rng: np.random.Generator, n: int, cloudiness: float) -> np.ndarray:
    """Per-date cloud fraction, bimodal like real series (clear / partly / overcast)."""
    p_overcast = 0.25 + 0.3 * cloudiness
    p_clear = (1 - p_overcast) * 0.7
    kind = rng.choice(3, size=n, p=[p_clear, 1 - p_clear - p_overcast, p_overcast])
    cover = np.where(kind == 0, rng.uniform(0, 0.02, n), np.where(kind == 1, rng.uniform(0.05, 0.6, n), rng.uniform(0.6, 1.0, n)))
    return cover


def _clouds(rng: np.random.Generator, h: int, w: int, cover: float) -> np.ndarray:
    """Cloud opacity field for one date: fractal blobs with thick cores and thin, soft edges."""
    if cover < 0.005:
        return np.zeros((h, w), np.float32)
    field = fractal_noise(rng, (h, w), rng.uniform(2.6, 3.6))
    thr = np.quantile(field, 1 - cover)
    tau = np.clip(field - thr, 0, None) * rng.uniform(2.0, 6.0)
    alpha = 1.0 - np.exp(-tau)
    if cover > 0.97:  # overcast: the whole scene is under a thick deck
        alpha = np.maximum(alpha, rng.uniform(0.7, 0.95))
    return np.clip(alpha, 0, 1).astype(np.float32)


def simulate_scene(
    seed: int = 0,
    size: int | tuple[int, int] = 300,
    n_dates: int = 24,
    start: str = "2024-03-01",
    cadence_days: int = 10,
    cloudiness: float | None = None,
) -> SyntheticScene:
    """Simulate one SYNTHETIC L2A-like series; everything is determined by ``seed`` (the steps
    draw from one generator in a fixed order, so every seed keeps producing the same scene)."""
    rng = np.random.default_rng(seed)
    h, w = (size, size) if isinstance(size, int) else size
    cloudiness = rng.uniform(0.1, 0.9) if cloudiness is None else cloudiness
    # Cadences under 5 days are not real revisits: draw an irregular subset of a doubled grid instead.
    steps = np.sort(rng.choice(np.arange(n_dates * 2), size=n_dates, replace=False)) if cadence_days < 5 else np.arange(n_dates)
    rng.integers(0, 3, n_dates)  # reserved draw, kept so every seed keeps producing the same scene
    dates = np.datetime64(start, "D") + (steps * cadence_days).astype("timedelta64[D]")
    doy = np.array([(d - d.astype("datetime64[Y]")).astype(int) + 1 for d in dates], dtype=np.float32)
    cls, parcel = _land_cover(rng, h, w)
    surface = _surfaces(rng, doy, cls, parcel)
    observed, scl, alpha = _observed(rng, surface, cls, _cloud_cover_draw(rng, n_dates, cloudiness))
    return SyntheticScene(dates=dates, surface=surface, observed=observed, scl=scl, cloud_alpha=alpha, land_cover=cls)


def _surfaces(rng: np.random.Generator, doy: np.ndarray, cls: np.ndarray, parcel: np.ndarray) -> np.ndarray:
    """The clear surface (T, 12, H, W): per-parcel phenology and brightness (crops sown and
    harvested at different dates), natural cover's season, texture, and per-date gains."""
    h, w = cls.shape
    n_par = parcel.max() + 1
    p_up = rng.uniform(70, 160, n_par)
    p_len = rng.uniform(50, 120, n_par)
    winter = rng.random(n_par) < 0.3
    p_up = np.where(winter, rng.uniform(-40, 20, n_par), p_up)
    p_amp = rng.uniform(0.6, 1.0, n_par)
    p_bright = rng.normal(1.0, 0.08, n_par)
    nat_up, nat_down = rng.uniform(95, 125), rng.uniform(270, 300)
    texture = 1.0 + 0.06 * fractal_noise(rng, (h, w), 2.0) + 0.03 * rng.standard_normal((h, w)).astype(np.float32)
    bright = (p_bright[parcel] * texture).astype(np.float32)
    soil_var = np.clip(1.0 + 0.15 * fractal_noise(rng, (h, w), 3.0), 0.6, 1.4)
    surface = np.empty((len(doy), 12, h, w), np.float32)
    s = SPECTRA
    for t, d in enumerate(doy):
        g_nat = _greenness(np.float32(d), nat_up, nat_down)
        g_c = (p_amp * _greenness(np.float32(d), p_up, p_up + p_len, 8.0))[parcel][None]
        img = np.zeros((12, h, w), np.float32)
        for k, on, off, g in ((1, "forest_on", "forest_off", np.float32(g_nat)),
                              (3, "grass_on", "grass_off", np.float32(0.3 + 0.7 * g_nat))):
            m = cls == k
            img[:, m] = (g * s[on][:, None] + (1 - g) * s[off][:, None])
        m = cls == 2
        crop = g_c * s["crop_on"][:, None, None] + (1 - g_c) * (s["soil"][:, None, None] * soil_var[None])
        img[:, m] = crop[:, m]
        for k, name in ((0, "water"), (4, "urban"), (5, "bare")):
            m = cls == k
            img[:, m] = s[name][:, None] * (soil_var[m] if name == "bare" else 1.0)
        img *= bright[None]
        img[:, cls == 0] = s["water"][:, None] * (1 + 0.1 * texture[cls == 0] - 0.1)
        # Residual atmospheric / BRDF differences between dates: per-band gain and offset.
        gain = rng.normal(1.0, 0.025) * rng.normal(1.0, 0.01, 12).astype(np.float32)
        img = img * gain[:, None, None] + rng.normal(0, 0.003, (12, 1, 1)).astype(np.float32)
        img += rng.normal(0, 0.004, img.shape).astype(np.float32)
        surface[t] = np.clip(img, 0.0005, 1.2)
    return surface


def _observed(rng: np.random.Generator, surface: np.ndarray, cls: np.ndarray, cover: np.ndarray):
    """``(observed, scl, cloud alpha)``: each date's clouds, cirrus and shadows over the surface,
    SCL as Sen2Cor would label them, and orbit-edge nodata on some dates."""
    n_dates, _, h, w = surface.shape
    observed = surface.copy()
    alpha_all = np.zeros((n_dates, h, w), np.float32)
    scl = np.empty((n_dates, h, w), np.uint8)
    veg = (surface[:, 7] - surface[:, 3]) / (surface[:, 7] + surface[:, 3] + 1e-6) > 0.35
    base_scl = np.where(cls[None] == 0, 6, np.where(veg, 4, 5)).astype(np.uint8)
    for t in range(n_dates):
        alpha = _clouds(rng, h, w, float(cover[t]))
        cirrus = np.zeros((h, w), np.float32)
        if rng.random() < 0.3:
            cf = fractal_noise(rng, (h, w), 2.4, stretch=rng.uniform(2, 5))
            cirrus = np.clip((cf - np.quantile(cf, rng.uniform(0.3, 0.9))) * 0.15, 0, 0.3).astype(np.float32)
        # Shadow: cloud opacity displaced away from the sun (morning overpass, sun to the south-east).
        dy, dx = int(rng.uniform(8, 30)), -int(rng.uniform(4, 20))
        shadow = np.roll(alpha, (-dy, dx), axis=(0, 1))
        shadow[-dy:] = 0 if dy > 0 else shadow[-dy:]
        shadow = np.clip(shadow * (1 - alpha), 0, 1)
        obs = observed[t]
        obs *= 1.0 - 0.65 * shadow[None]
        obs[:] = obs * (1 - cirrus[None]) + SPECTRA["cirrus"][:, None, None] * cirrus[None]
        cloud_spec = SPECTRA["cloud"] * rng.uniform(0.85, 1.15)
        obs[:] = obs * (1 - alpha[None]) + cloud_spec[:, None, None] * alpha[None] * (0.8 + 0.2 * alpha[None])
        alpha_all[t] = np.maximum(alpha, cirrus)
        sc = base_scl[t].copy()
        sc[shadow > 0.25] = 3
        sc[(cirrus > 0.08) & (alpha < 0.15)] = 10
        sc[(alpha > 0.15) & (alpha <= 0.45)] = 8
        sc[alpha > 0.45] = 9
        # Orbit-edge nodata on some dates: a diagonal band of the tile is outside the swath.
        if rng.random() < 0.12:
            yy, xx = np.mgrid[0:h, 0:w]
            edge = (xx + 0.3 * yy) > rng.uniform(0.5, 1.0) * (w + 0.3 * h)
            obs[:, edge] = np.nan
            sc[edge] = 0
        scl[t] = sc
    return observed, scl, alpha_all


def native_resolution(refl: np.ndarray, bands: tuple[str, ...] = L2A_BANDS) -> np.ndarray:
    """Blur 20 m / 60 m bands the way a 10 m cube sees them (block mean, then bilinear upsampling).

    Training on this teaches the networks the real resolution mix of a 10 m L2A cube.
    """
    from ..bands import band_info

    out = refl.copy()
    h, w = refl.shape[-2:]
    for i, b in enumerate(bands):
        f = band_info(b).resolution // 10
        if f == 1 or h % f or w % f:
            continue
        a = refl[..., i, :, :]
        lead = a.shape[:-2]
        coarse = a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))
        out[..., i, :, :] = _upsample_linear(coarse, f)
    return out
