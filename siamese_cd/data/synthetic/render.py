"""Rendering of one synthetic bi-temporal aerial scene: `render_pair`.

Buildings appear or are demolished and roads are laid between the dates (labelled); the
illumination, the season of the vegetation, sensor noise and a sub-pixel misregistration of
the second date change too (not labelled). `siamese_cd.data.synthetic.generate` writes datasets of
such scenes.

Example:
    >>> import numpy as np
    >>> t1, t2, label = render_pair(np.random.default_rng(0), 64)
    >>> t1.shape, t2.shape, label.shape, sorted(np.unique(label).tolist())
    ((64, 64, 3), (64, 64, 3), (64, 64), [0, 255])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from siamese_cd.errors import DatasetError

__all__ = ["render_pair"]

# Scenes are rendered on a canvas this many pixels larger on every side, so that shifting the
# second date by up to one pixel still samples real scene content instead of a border.
_MARGIN = 2
# Object sizes are in pixels whatever the image size (a fixed ground resolution); larger
# images hold more objects rather than bigger ones. Counts are given per 64 x 64 pixels.
_REF_AREA = 64 * 64
_P_NO_CHANGE = 0.1

_ROOF_COLOURS = np.array(
    [
        (0.64, 0.25, 0.19),  # red tiles
        (0.74, 0.40, 0.24),  # terracotta
        (0.56, 0.56, 0.57),  # grey concrete
        (0.88, 0.87, 0.84),  # white membrane
        (0.21, 0.27, 0.44),  # dark blue metal
        (0.30, 0.30, 0.32),  # dark grey slate
        (0.76, 0.69, 0.56),  # beige
    ],
    dtype=np.float32,
)
# Vegetation from lush to dry to bare; a date's season picks a point along this path.
_SEASON_COLOURS = np.array(
    [(0.17, 0.33, 0.12), (0.33, 0.44, 0.19), (0.58, 0.53, 0.30), (0.50, 0.40, 0.25)],
    dtype=np.float32,
)
_SOIL_LIGHT = np.array((0.63, 0.56, 0.45), dtype=np.float32)
_SOIL_DARK = np.array((0.44, 0.36, 0.27), dtype=np.float32)
_ASPHALT = np.array((0.34, 0.34, 0.36), dtype=np.float32)
_NEW_ASPHALT = np.array((0.24, 0.24, 0.26), dtype=np.float32)
# Shadows are bluish because they are lit by the sky only.
_SHADOW = np.array((0.48, 0.50, 0.58), dtype=np.float32)


@dataclass
class _Building:
    polys: list[list[tuple[float, float]]]  # one polygon, or two roof halves for a gable
    colour: np.ndarray
    in_t1: bool = True
    in_t2: bool = True


def _smooth_noise(rng: np.random.Generator, side: int, cell: float) -> np.ndarray:
    """Unit-variance-ish noise whose features are about ``cell`` pixels across."""
    grid = max(2, math.ceil(side / cell) + 1)
    small = rng.standard_normal((grid, grid)).astype(np.float32)
    big = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = mask[y - dy, x - dx]``, filling with False instead of wrapping around."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy or dx:
                out |= _shift(mask, dy, dx)
    return out


def _band(x: float, y: float, angle: float, width: float, back: float, forward: float):
    """Corners of a straight band of ``width`` through (x, y) from ``-back`` to ``forward``."""
    ux, uy = math.cos(angle), math.sin(angle)
    nx, ny = -uy * width / 2, ux * width / 2
    x0, y0 = x - ux * back, y - uy * back
    x1, y1 = x + ux * forward, y + uy * forward
    return [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]


def _draw_mask(side: int, polygons) -> np.ndarray:
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        draw.polygon(poly, fill=1)
    return np.asarray(img, dtype=bool)


def _roads(rng: np.random.Generator, side: int, changed: bool):
    """Polygons of the roads present at both dates, and of one new road (or None)."""
    scale = side / 64
    n_roads = int(rng.integers(0, 3) if scale <= 1 else rng.poisson(0.9 * scale))
    old = []
    axes = []
    for _ in range(n_roads):
        # Mostly on the grid, sometimes slightly skewed, as in planned neighbourhoods.
        angle = rng.choice([0.0, math.pi / 2]) + math.radians(rng.uniform(-12, 12))
        x, y = rng.uniform(0, side, size=2)
        old.append(_band(x, y, angle, rng.uniform(3.5, 6.5), 2 * side, 2 * side))
        axes.append((x, y, angle))
    new = None
    if changed and rng.random() < 0.25:
        width = rng.uniform(3.5, 6.0)
        if axes and rng.random() < 0.7:
            # A spur leaving an existing road at a right angle.
            x, y, angle = axes[int(rng.integers(len(axes)))]
            t = rng.uniform(-side / 2, side / 2)
            x, y = x + t * math.cos(angle), y + t * math.sin(angle)
            angle += rng.choice([-1, 1]) * math.pi / 2
            new = _band(x, y, angle, width, 0, rng.uniform(0.3, 0.8) * side)
        else:
            angle = rng.choice([0.0, math.pi / 2]) + math.radians(rng.uniform(-12, 12))
            x, y = rng.uniform(0, side, size=2)
            new = _band(x, y, angle, width, 2 * side, 2 * side)
    return old, new


def _place_buildings(rng: np.random.Generator, side: int, size: int, occupied: np.ndarray):
    """Non-overlapping buildings, kept off the roads and at least 2 px apart."""
    n_target = max(1, round(rng.uniform(7, 16) * size * size / _REF_AREA))
    max_side = max(6, min(20, size // 2))
    gap = 2
    # Candidates are drawn in one batch, then accepted by rejection against occupied ground.
    n_try = 20 * n_target
    widths = rng.integers(5, max_side + 1, size=n_try).astype(np.float64)
    heights = np.clip(np.round(widths * rng.uniform(0.5, 1.6, size=n_try)), 5, max_side)
    # Rotation only for buildings large enough to still look rectangular once rasterised.
    rotate = (rng.random(n_try) < 0.35) & (np.minimum(widths, heights) >= 8)
    angles = np.where(rotate, np.radians(rng.uniform(-35, 35, size=n_try)), 0.0)
    centres = rng.uniform(0, side, size=(n_try, 2))
    gables = rng.random(n_try) < 0.45
    hws, hhs = (widths - 1) / 2, (heights - 1) / 2
    cos, sin = np.cos(angles), np.sin(angles)
    # Half extents of the rotated rectangle's bounding box.
    ext_x = np.abs(cos) * hws + np.abs(sin) * hhs
    ext_y = np.abs(sin) * hws + np.abs(cos) * hhs
    x0s = np.maximum(0, (centres[:, 0] - ext_x).astype(int) - gap)
    x1s = np.minimum(side, (centres[:, 0] + ext_x).astype(int) + gap + 2)
    y0s = np.maximum(0, (centres[:, 1] - ext_y).astype(int) - gap)
    y1s = np.minimum(side, (centres[:, 1] + ext_y).astype(int) + gap + 2)

    occupied = occupied.copy()
    accepted = []
    for j in range(n_try):
        if len(accepted) >= n_target:
            break
        x0, x1, y0, y1 = x0s[j], x1s[j], y0s[j], y1s[j]
        if x0 >= x1 or y0 >= y1 or occupied[y0:y1, x0:x1].any():
            continue
        occupied[y0:y1, x0:x1] = True
        accepted.append(j)

    buildings: list[_Building] = []
    for j in accepted:
        cx, cy, c, s = centres[j, 0], centres[j, 1], cos[j], sin[j]
        hw, hh = hws[j], hhs[j]

        def corner(lx: float, ly: float, cx=cx, cy=cy, c=c, s=s) -> tuple[float, float]:
            return (float(cx + lx * c - ly * s), float(cy + lx * s + ly * c))

        if gables[j]:
            # Gable roof: the two halves face the sun differently, split along the long axis.
            if hw >= hh:
                a = [corner(-hw, -hh), corner(hw, -hh), corner(hw, 0), corner(-hw, 0)]
                b = [corner(-hw, 0), corner(hw, 0), corner(hw, hh), corner(-hw, hh)]
            else:
                a = [corner(-hw, -hh), corner(0, -hh), corner(0, hh), corner(-hw, hh)]
                b = [corner(0, -hh), corner(hw, -hh), corner(hw, hh), corner(0, hh)]
            polys = [a, b]
        else:
            polys = [[corner(-hw, -hh), corner(hw, -hh), corner(hw, hh), corner(-hw, hh)]]
        colour = _ROOF_COLOURS[int(rng.integers(len(_ROOF_COLOURS)))]
        colour = np.clip(colour * rng.uniform(0.9, 1.1) + rng.normal(0, 0.03, 3), 0, 1)
        buildings.append(_Building(polys, colour.astype(np.float32)))
    return buildings


def _season_colour(s: float) -> np.ndarray:
    pos = s * (len(_SEASON_COLOURS) - 1)
    i = min(int(pos), len(_SEASON_COLOURS) - 2)
    f = pos - i
    return (1 - f) * _SEASON_COLOURS[i] + f * _SEASON_COLOURS[i + 1]


def _bilinear_crop(img: np.ndarray, oy: float, ox: float, size: int) -> np.ndarray:
    """``size`` x ``size`` window of ``img`` whose top-left corner is at the real point (oy, ox)."""
    y0, x0 = int(math.floor(oy)), int(math.floor(ox))
    fy, fx = oy - y0, ox - x0
    a = img[y0 : y0 + size, x0 : x0 + size]
    b = img[y0 : y0 + size, x0 + 1 : x0 + 1 + size]
    c = img[y0 + 1 : y0 + 1 + size, x0 : x0 + size]
    d = img[y0 + 1 : y0 + 1 + size, x0 + 1 : x0 + 1 + size]
    return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


def _sensor(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Per-date illumination, colour balance and Gaussian noise, then 8-bit quantisation."""
    gain = rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, size=3)
    offset = rng.uniform(-0.04, 0.04, size=3)
    img = img * gain.astype(np.float32) + offset.astype(np.float32)
    img = img + rng.uniform(0.005, 0.03) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def render_pair(
    rng: np.random.Generator, size: int, change_rate: tuple[float, float] = (0.4, 0.9)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one bi-temporal scene and its change mask.

    Args:
        rng: Source of randomness; the output depends only on its state and ``size``.
        size: Height and width of the images in pixels (at least 8).
        change_rate: range of the chance, drawn once per scene, that a building appears or
            vanishes; lower values make change rarer (real benchmarks have a few percent).

    Returns:
        ``(t1, t2, label)``: two ``uint8`` arrays of shape ``(size, size, 3)`` and a ``uint8``
        array of shape ``(size, size)`` holding 255 where a building or road exists at one date
        only, 0 elsewhere. The label is aligned with ``t1``; ``t2`` is slightly misregistered.

    Raises:
        DatasetError: If ``size`` is not an integer of at least 8.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise DatasetError(f"render_pair: size must be an integer >= 8, got {size!r}")
    size = int(size)
    side = size + 2 * _MARGIN
    changed = rng.random() >= _P_NO_CHANGE
    terrain = _terrain(rng, side)
    old_roads, new_road = _roads(rng, side, changed)
    road_old = _draw_mask(side, old_roads)
    road_new = _draw_mask(side, [new_road]) & ~road_old if new_road else np.zeros_like(road_old)
    occupied = _dilate(road_old | road_new, 1)
    buildings = _place_buildings(rng, side, size, occupied)
    if changed:
        _choose_changes(rng, buildings, change_rate, new_road is not None)
    bid, roof = _roofs(buildings, side, terrain[-1])
    present = {
        1: np.array([False] + [b.in_t1 for b in buildings]),
        2: np.array([False] + [b.in_t2 for b in buildings]),
    }
    # The sun (hence the shadow direction and length) is the same at both dates.
    sun = rng.uniform(0, 2 * math.pi)
    shadow_len = int(rng.integers(1, 4))
    seasons = rng.uniform(0, 1, size=2)
    roads = {1: road_old, 2: road_new}
    canvases = [
        _paint(date, float(season), terrain, roads, present[date][bid], roof, sun, shadow_len)
        for date, season in zip((1, 2), seasons, strict=True)
    ]
    label_full = (~present[1][bid] & present[2][bid]) | (present[1][bid] & ~present[2][bid])
    label_full |= road_new
    m = _MARGIN
    t1 = _sensor(rng, canvases[0][m : m + size, m : m + size])
    offset_y, offset_x = rng.uniform(-1, 1, size=2)
    t2 = _sensor(rng, _bilinear_crop(canvases[1], m + offset_y, m + offset_x, size))
    label = np.where(label_full[m : m + size, m : m + size], 255, 0).astype(np.uint8)
    return t1, t2, label


def _terrain(rng: np.random.Generator, side: int) -> tuple[np.ndarray, ...]:
    """Terrain shared by both dates: ``(soil, vegetation share, canopy, texture)``.

    Soil varies from sandy to dark; vegetation patches take the colour of each date's season.
    """
    soil_mix = 1 / (1 + np.exp(-1.5 * _smooth_noise(rng, side, rng.uniform(14, 30))))
    soil = soil_mix[..., None] * _SOIL_DARK + (1 - soil_mix[..., None]) * _SOIL_LIGHT
    soil *= np.float32(rng.uniform(0.88, 1.12)) * rng.uniform(0.96, 1.04, size=3).astype(np.float32)
    veg_field = _smooth_noise(rng, side, rng.uniform(12, 28))
    veg_thr = np.quantile(veg_field, 1 - rng.uniform(0.15, 0.6))
    veg = np.clip((veg_field - veg_thr) * 3 + 0.5, 0, 1)[..., None]
    # Tree clumps are darker than grass within the vegetated areas.
    canopy = 0.9 + 0.12 * _smooth_noise(rng, side, 3.5)
    trees = np.clip((_smooth_noise(rng, side, 6) - 0.5) * 2, 0, 1)
    canopy = (canopy * (1 - 0.35 * trees))[..., None]
    texture = (1 + 0.04 * rng.standard_normal((side, side))).astype(np.float32)[..., None]
    return soil, veg, canopy, texture


def _choose_changes(
    rng: np.random.Generator, buildings: list, change_rate: tuple[float, float], new_road: bool
) -> None:
    """Mark buildings built (absent at date 1) or demolished (absent at date 2)."""
    p_change = rng.uniform(*change_rate)
    for b in buildings:
        if rng.random() < p_change:
            if rng.random() < 0.5:
                b.in_t1 = False  # new construction
            else:
                b.in_t2 = False  # demolition
    if not new_road and buildings and all(b.in_t1 and b.in_t2 for b in buildings):
        # A scene that changes shows at least one change.
        b = buildings[int(rng.integers(len(buildings)))]
        if rng.random() < 0.5:
            b.in_t1 = False
        else:
            b.in_t2 = False


def _roofs(buildings: list, side: int, texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(building id per pixel, roof colours)``: two shaded halves and a dark outline each.

    All buildings go into one index image (they never overlap); index 2k+1 / 2k+2 are the two
    roof halves of building k, so building k is (index + 1) // 2.
    """
    index_img = Image.new("I", (side, side), 0)
    draw = ImageDraw.Draw(index_img)
    lut = np.zeros((2 * len(buildings) + 1, 3), dtype=np.float32)
    for k, b in enumerate(buildings):
        for half, poly in enumerate(b.polys):
            draw.polygon(poly, fill=2 * k + 1 + half)
        lut[2 * k + 1] = b.colour
        lut[2 * k + 2] = b.colour * 0.78
    index = np.asarray(index_img, dtype=np.int64)
    bid = (index + 1) // 2
    roof = lut[index] * texture
    padded = np.pad(bid, 1, mode="edge")
    outline = (bid > 0) & (
        (padded[:-2, 1:-1] != bid)
        | (padded[2:, 1:-1] != bid)
        | (padded[1:-1, :-2] != bid)
        | (padded[1:-1, 2:] != bid)
    )
    return bid, np.where(outline[..., None], roof * 0.65, roof)


def _paint(date, season, terrain, roads, standing, roof, sun, shadow_len) -> np.ndarray:
    """The canvas of one date: ground in its season, roads, standing buildings, shadows."""
    soil, veg, canopy, texture = terrain
    vegetation = _season_colour(season) * canopy
    ground = (soil * (1 - veg) + vegetation * veg) * texture
    ground = np.where(roads[1][..., None], _ASPHALT * texture, ground)
    if date == 2:
        # Fresh asphalt is darker than the weathered roads.
        ground = np.where(roads[2][..., None], _NEW_ASPHALT * texture, ground)
    shadow = np.zeros_like(standing)
    for t in range(1, shadow_len + 1):
        dy, dx = round(t * math.sin(sun)), round(t * math.cos(sun))
        shadow |= _shift(standing, dy, dx)
    ground = np.where((shadow & ~standing)[..., None], ground * _SHADOW, ground)
    return np.where(standing[..., None], roof, ground)
