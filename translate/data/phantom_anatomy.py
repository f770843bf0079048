"""Geometry of the built-in torso phantom: a tissue label map drawn from smooth random shapes.

Array layout is ``(z, y, x)``: z runs caudal -> cranial, y anterior -> posterior and x from the
patient's right to left (LPS, the order SimpleITK uses), so a slice shown with row 0 at the top
is in radiological convention. In-plane positions are millimetres from the grid centre; the
cranio-caudal position is the fraction ``t`` in [0, 1] of the grid's extent, so every grid spans
the hips (t = 0) to the lower thorax (t = 1) whatever its slice count. Structures are painted in
order, later ones over earlier ones, as ``(label, mask)`` pairs of star-shaped blobs:

.. math::
    \\text{inside} \\iff \\rho < 1 + \\sum_n a_n \\cos(n\\theta + \\phi_n), \\qquad
    \\rho^2 = (u / a_x)^2 + (v / a_y)^2

with ``(u, v)`` the rotated offset from the blob centre and ``theta`` its polar angle.
"""

from __future__ import annotations

import numpy as np

AIR, FAT, SOFT, LIVER, KIDNEY, SPLEEN, FLUID, GAS, CORTICAL, MARROW = range(10)


def ellipsoid_profile(t: np.ndarray, t_lo: float, t_hi: float) -> np.ndarray:
    """Cross-section scale of an ellipsoid spanning ``[t_lo, t_hi]``: 1 at the middle, 0 at the ends."""
    mid, half = 0.5 * (t_lo + t_hi), 0.5 * (t_hi - t_lo)
    return np.sqrt(np.clip(1.0 - ((t - mid) / half) ** 2, 0.0, None))


class Canvas:
    """A label map on a (possibly supersampled) grid with deformed in-plane coordinates.

    Args:
        x, y: in-plane positions in mm, ``(Z, Y, X)``, already smoothly deformed.
        t: cranio-caudal fraction per slice, ``(Z,)``.
        x_axis, y_axis: the undeformed sample positions in mm, ``(X,)`` and ``(Y,)``, increasing;
            with the largest displacement they bound where a blob can land, so each blob is
            evaluated only inside its box.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray):
        self.x, self.y, self.t = x, y, t
        self.x_axis, self.y_axis = x_axis, y_axis
        self.margin = float(max(np.abs(x - x_axis[None, None, :]).max(), np.abs(y - y_axis[None, :, None]).max()))
        self.labels = np.zeros(x.shape, dtype=np.uint8)
        self.body: np.ndarray | None = None

    def slab(self, t_lo: float, t_hi: float) -> slice:
        """The slices whose t lies in ``[t_lo, t_hi]`` (t increases with the index)."""
        lo = np.searchsorted(self.t, t_lo, side="left")
        hi = np.searchsorted(self.t, t_hi, side="right")
        return slice(int(lo), int(hi))

    def _box(self, cx, cy, reach: float) -> tuple[slice, slice]:
        reach = reach + self.margin + 1.0
        rows = np.searchsorted(self.y_axis, [np.min(cy) - reach, np.max(cy) + reach])
        cols = np.searchsorted(self.x_axis, [np.min(cx) - reach, np.max(cx) + reach])
        return slice(int(rows[0]), int(rows[1])), slice(int(cols[0]), int(cols[1]))

    def blob(self, zs: slice, cx, cy, ax, ay, angle: float = 0.0,
             harmonics: tuple = ()) -> np.ndarray:
        """Mask ``(n, Y, X)`` of a star-shaped blob on slices ``zs``.

        Centre and semi-axes (mm) are scalars or ``(n, 1, 1)`` arrays; ``harmonics`` holds
        ``(n, a_n, phi_n)`` with n in {2, 3}; angles in radians.
        """
        ax = np.maximum(ax, 1e-3)
        ay = np.maximum(ay, 1e-3)
        mask = np.zeros(self.x[zs].shape, dtype=bool)
        if mask.size == 0:
            return mask
        reach = float(np.max(np.maximum(ax, ay))) * (1.0 + sum(abs(h[1]) for h in harmonics))
        rows, cols = self._box(cx, cy, reach)
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return mask
        u, v = self.x[zs, rows, cols] - cx, self.y[zs, rows, cols] - cy
        if angle:
            c, s = float(np.cos(angle)), float(np.sin(angle))
            u, v = c * u + s * v, -s * u + c * v
        un, vn = u / ax, v / ay
        rho2 = un * un + vn * vn
        if not harmonics:
            mask[:, rows, cols] = rho2 < 1.0
            return mask
        rho = np.sqrt(rho2) + 1e-6
        cos1, sin1 = un / rho, vn / rho
        bound = np.ones_like(rho)
        for n, amplitude, phase in harmonics:
            # cos(n theta + phi) from cos/sin theta by multiple-angle formulas: no arctan2 needed.
            if n == 2:
                cos_n, sin_n = 2 * cos1 * cos1 - 1, 2 * sin1 * cos1
            else:
                cos_n, sin_n = cos1 * (4 * cos1 * cos1 - 3), sin1 * (3 - 4 * sin1 * sin1)
            bound += amplitude * (cos_n * np.cos(phase) - sin_n * np.sin(phase))
        mask[:, rows, cols] = rho < bound
        return mask

    def paint(self, zs: slice, mask: np.ndarray, label: int, within: np.ndarray | None = None):
        """Set ``label`` where ``mask`` holds on slices ``zs``, inside ``within`` (default: the body)."""
        within = self.body if within is None else within
        if within is not None:
            mask = mask & within[zs]
        self.labels[zs][mask] = label


def _harm(rng: np.random.Generator, strength: float) -> tuple:
    return tuple((n, float(rng.uniform(0, strength)), float(rng.uniform(0, 2 * np.pi))) for n in (2, 3))


def _shelled(canvas: Canvas, zs: slice, cx, cy, ax, ay, cortex: float, angle: float = 0.0,
             within: np.ndarray | None = None):
    """A bone: cortical shell of thickness ``cortex`` mm around a marrow core."""
    canvas.paint(zs, canvas.blob(zs, cx, cy, ax, ay, angle), CORTICAL, within)
    canvas.paint(zs, canvas.blob(zs, cx, cy, ax - cortex, ay - cortex, angle), MARROW, within)


def draw_torso(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Paint one subject's abdomen and pelvis onto ``canvas``; returns the labels ``(Z, Y, X)`` uint8."""
    t = canvas.t
    col = t[:, None, None]
    everywhere = slice(0, len(t))

    # Body outline, waist narrower than hips and lower chest; the back flattened by the table.
    ax = rng.uniform(108, 126) * (1 + 0.07 * (1 - col) ** 2 - 0.04 * np.sin(np.pi * col)
                                  + rng.uniform(-0.03, 0.03) * np.sin(2 * np.pi * col + rng.uniform(0, 6)))
    ay = rng.uniform(76, 94) * (1 + rng.uniform(0.0, 0.08) * np.sin(np.pi * col))
    body = canvas.blob(everywhere, 0.0, 0.0, ax, ay, harmonics=_harm(rng, 0.04))
    body &= canvas.y < 0.9 * ay
    canvas.paint(everywhere, body, FAT)
    canvas.body = body

    fat = rng.uniform(6, 24)
    wall = rng.uniform(7, 12)
    inner_ax, inner_ay = ax - fat, ay - 1.25 * fat
    canvas.paint(everywhere, canvas.blob(everywhere, 0.0, 0.15 * fat, inner_ax, inner_ay), SOFT)
    cav_ax, cav_ay = inner_ax - wall, inner_ay - wall
    cavity = canvas.blob(everywhere, 0.0, 0.15 * fat, cav_ax, cav_ay, harmonics=_harm(rng, 0.05)) & body
    canvas.paint(everywhere, cavity, FAT)  # visceral fat fills what the organs leave

    # Spine landmarks, with a lordotic curve; everything posterior hangs off the vertebral body.
    y_vb = 0.9 * ay - 0.6 * fat - rng.uniform(58, 66) + 6 * np.sin(np.pi * col)
    vx = rng.uniform(18, 23) * (1.05 - 0.1 * col)
    vy = rng.uniform(13, 16) * (1.05 - 0.1 * col)
    cortex = rng.uniform(2.5, 4.5)

    _draw_muscles(canvas, rng, y_vb, vx, vy, cav_ax, cav_ay)
    _draw_viscera(canvas, rng, cavity, y_vb, vx, cav_ax, cav_ay)
    _draw_spine(canvas, rng, y_vb, vx, vy, cortex)
    _draw_pelvis(canvas, rng, y_vb, vx, inner_ax, inner_ay, cortex)
    _draw_ribs(canvas, rng, inner_ax, inner_ay, wall)
    return canvas.labels


def _draw_muscles(canvas: Canvas, rng, y_vb, vx, vy, cav_ax, cav_ay):
    everywhere = slice(0, len(canvas.t))
    for side in (-1, 1):
        canvas.paint(everywhere, canvas.blob(everywhere, side * 30, y_vb + vy + 24,
                                             rng.uniform(19, 24), rng.uniform(17, 22)), SOFT)
        zs = canvas.slab(0.0, 0.42)  # gluteal masses around the iliac wings
        canvas.paint(zs, canvas.blob(zs, side * 0.62 * cav_ax[zs], 0.45 * cav_ay[zs],
                                     rng.uniform(38, 48), rng.uniform(26, 34)), SOFT)
        zs = canvas.slab(0.28, 0.8)  # psoas, thicker caudally
        radius = rng.uniform(11, 15) * (1.5 - (canvas.t[zs, None, None] - 0.28) / 0.52)
        canvas.paint(zs, canvas.blob(zs, side * (vx[zs] + radius), y_vb[zs] - 4, radius, radius), SOFT)


def _draw_viscera(canvas: Canvas, rng, cavity, y_vb, vx, cav_ax, cav_ay):
    t = canvas.t
    # Bowel loops: tubes meandering along z, some holding gas, some fluid.
    for _ in range(int(rng.integers(10, 16))):
        t_lo = rng.uniform(0.15, 0.6)
        zs = canvas.slab(t_lo, t_lo + rng.uniform(0.15, 0.4))
        col = t[zs, None, None]
        cx = rng.uniform(-0.7, 0.7) * cav_ax[zs] + 10 * np.sin(2 * np.pi * rng.uniform(1, 3) * col + rng.uniform(0, 6))
        cy = rng.uniform(-0.75, 0.2) * cav_ay[zs] + 8 * np.sin(2 * np.pi * rng.uniform(1, 3) * col + rng.uniform(0, 6))
        radius = rng.uniform(9, 16)
        canvas.paint(zs, canvas.blob(zs, cx, cy, radius, radius), SOFT, cavity)
        content = rng.choice([GAS, FLUID, SOFT], p=[0.35, 0.2, 0.45])
        canvas.paint(zs, canvas.blob(zs, cx, cy, 0.6 * radius, 0.6 * radius), content, cavity)
    # Colon frame: ascending (right), descending (left), transverse (anterior), mostly gas-filled.
    for cx_frac, cy_frac, t_lo, t_hi, axis_mm in ((-0.68, -0.1, 0.25, 0.72, (17, 17)),
                                                    (0.72, 0.0, 0.3, 0.8, (15, 15)),
                                                    (0.0, -0.6, 0.64, 0.76, (0.55, 14))):
        zs = canvas.slab(t_lo, t_hi)
        cx, cy = cx_frac * cav_ax[zs], cy_frac * cav_ay[zs]
        a_x = axis_mm[0] * cav_ax[zs] if axis_mm[0] < 1 else axis_mm[0]
        canvas.paint(zs, canvas.blob(zs, cx, cy, a_x, axis_mm[1]), SOFT, cavity)
        inner = GAS if rng.uniform() < 0.7 else SOFT
        canvas.paint(zs, canvas.blob(zs, cx, cy, a_x - 4, axis_mm[1] - 4), inner, cavity)

    # Bladder (with its wall) and rectum in the pelvis.
    t_top = rng.uniform(0.22, 0.32)
    zs = canvas.slab(0.0, t_top)
    scale = ellipsoid_profile(t[zs, None, None], -0.08, t_top)
    bx, by = rng.uniform(-6, 6), -0.45 * cav_ay[zs]
    bladder_ax, bladder_ay = rng.uniform(30, 42) * scale, rng.uniform(22, 32) * scale
    canvas.paint(zs, canvas.blob(zs, bx, by, bladder_ax + 3, bladder_ay + 3), SOFT, cavity)
    canvas.paint(zs, canvas.blob(zs, bx, by, bladder_ax, bladder_ay, harmonics=_harm(rng, 0.06)), FLUID, cavity)
    zs = canvas.slab(0.0, 0.3)
    radius = rng.uniform(12, 16)
    canvas.paint(zs, canvas.blob(zs, 0.0, y_vb[zs] - 22, radius, radius), SOFT)
    if rng.uniform() < 0.6:
        canvas.paint(zs, canvas.blob(zs, 0.0, y_vb[zs] - 22, 0.5 * radius, 0.45 * radius), GAS)

    # Kidneys in perirenal fat; the right one sits lower.
    for side in (-1, 1):
        t_lo = rng.uniform(0.42, 0.48) - (0.05 if side < 0 else 0.0)
        zs = canvas.slab(t_lo, t_lo + rng.uniform(0.32, 0.4))
        scale = ellipsoid_profile(t[zs, None, None], t_lo, t_lo + 0.36)
        cx, cy = side * (vx[zs] + rng.uniform(30, 40)), y_vb[zs] + rng.uniform(-4, 6)
        k_ax, k_ay = rng.uniform(19, 25) * scale, rng.uniform(27, 33) * scale
        angle = side * np.deg2rad(rng.uniform(20, 35))
        canvas.paint(zs, canvas.blob(zs, cx, cy, 1.35 * k_ax, 1.25 * k_ay, angle), FAT)
        canvas.paint(zs, canvas.blob(zs, cx, cy, k_ax, k_ay, angle, _harm(rng, 0.1)), KIDNEY)

    # Liver fills the right upper quadrant, crossing the midline cranially; spleen on the left.
    t_lo = rng.uniform(0.48, 0.58)
    zs = canvas.slab(t_lo, 1.0)
    grow = np.sqrt(np.clip((t[zs, None, None] - t_lo) / (1.0 - t_lo), 0, 1))
    canvas.paint(zs, canvas.blob(zs, -0.42 * cav_ax[zs] + 25 * grow, -0.05 * cav_ay[zs],
                                 rng.uniform(0.5, 0.6) * cav_ax[zs] * (0.4 + 0.7 * grow),
                                 rng.uniform(0.7, 0.85) * cav_ay[zs] * (0.4 + 0.6 * grow),
                                 harmonics=_harm(rng, 0.1)), LIVER, cavity)
    t_lo = rng.uniform(0.6, 0.68)
    zs = canvas.slab(t_lo, 1.0)
    scale = ellipsoid_profile(t[zs, None, None], t_lo, t_lo + rng.uniform(0.45, 0.6))
    canvas.paint(zs, canvas.blob(zs, 0.62 * cav_ax[zs], 0.3 * cav_ay[zs], rng.uniform(17, 24) * scale,
                                 rng.uniform(30, 40) * scale, -np.deg2rad(rng.uniform(30, 50)),
                                 _harm(rng, 0.08)), SPLEEN, cavity)
    # Stomach, left anterior: fluid with a gas cap on the anterior (non-dependent) side.
    zs = canvas.slab(rng.uniform(0.7, 0.78), 1.0)
    cx, cy = 0.35 * cav_ax[zs], -0.45 * cav_ay[zs]
    s_ax, s_ay = rng.uniform(26, 36), rng.uniform(20, 28)
    canvas.paint(zs, canvas.blob(zs, cx, cy, s_ax, s_ay), SOFT, cavity)
    contents = canvas.blob(zs, cx, cy, s_ax - 4, s_ay - 4)
    canvas.paint(zs, contents, FLUID, cavity)
    canvas.paint(zs, contents & (canvas.y[zs] < cy - rng.uniform(0.0, 0.5) * s_ay), GAS, cavity)


def _draw_spine(canvas: Canvas, rng, y_vb, vx, vy, cortex):
    t = canvas.t
    period, offset = rng.uniform(0.13, 0.15), rng.uniform(0, 1)
    zs = canvas.slab(0.3, 1.0)
    phase = ((t[zs] / period + offset) % 1.0)[:, None, None]
    is_disc = phase > 0.8
    cy = y_vb[zs]
    canvas.paint(zs, canvas.blob(zs, 0.0, cy, vx[zs], vy[zs]), CORTICAL)
    marrow = canvas.blob(zs, 0.0, cy, vx[zs] - cortex, vy[zs] - cortex)
    canvas.paint(zs, marrow & ~is_disc, MARROW)
    canvas.paint(zs, marrow & is_disc, SOFT)  # intervertebral disc inside the endplate rim
    arch = ~is_disc
    canal_y = cy + vy[zs] + 9
    canvas.paint(zs, canvas.blob(zs, 0.0, canal_y, 15, 14) & arch, CORTICAL)
    for side in (-1, 1):  # transverse processes
        canvas.paint(zs, canvas.blob(zs, side * (vx[zs] + 12), canal_y - 4, 15, 5) & arch, CORTICAL)
    canvas.paint(zs, canvas.blob(zs, 0.0, canal_y + 20, 5, 13) & arch, CORTICAL)
    canvas.paint(zs, canvas.blob(zs, 0.0, canal_y + 22, 2.5, 8) & arch, MARROW)
    canvas.paint(zs, canvas.blob(zs, 0.0, canal_y, 8, 7), FLUID)  # spinal canal, CSF

    # Sacrum: wide, curving posteriorly and tapering towards the coccyx.
    zs = canvas.slab(0.06, 0.34)
    col = t[zs, None, None]
    taper = np.sqrt(np.clip((col - 0.06) / 0.28, 0, 1))
    cy = y_vb[zs] + 18 * (0.34 - col) / 0.28
    _shelled(canvas, zs, 0.0, cy, vx[zs] * (0.6 + 1.1 * taper), vy[zs] * (0.5 + 0.4 * taper), cortex)
    canvas.paint(zs, canvas.blob(zs, 0.0, cy + vy[zs] * 0.5, 7 * taper, 4 * taper), FLUID)


def _draw_pelvis(canvas: Canvas, rng, y_vb, vx, inner_ax, inner_ay, cortex):
    t = canvas.t
    # Iliac wings: curved shells from the sacroiliac joints sweeping anterolaterally.
    zs = canvas.slab(0.1, rng.uniform(0.42, 0.48))
    col = t[zs, None, None]
    flare = 0.72 + 0.35 * np.clip((col - 0.1) / 0.35, 0, 1)
    thickness = rng.uniform(8, 12) * (1.1 - 0.5 * np.clip((col - 0.1) / 0.35, 0, 1))
    for side in (-1, 1):
        # Centre of curvature in front of the sacrum: the wing is the posterolateral arc.
        cx, cy = side * rng.uniform(10, 20), y_vb[zs] - rng.uniform(40, 50)
        r_x = rng.uniform(0.6, 0.68) * inner_ax[zs] * flare
        r_y = rng.uniform(45, 55) * flare
        sector = (side * (canvas.x[zs] - cx) > 0.3 * r_x) & (canvas.y[zs] > cy - 0.2 * r_y)
        outer = canvas.blob(zs, cx, cy, r_x, r_y)
        hollow = canvas.blob(zs, cx, cy, r_x - thickness, r_y - thickness)
        core = (canvas.blob(zs, cx, cy, r_x - cortex, r_y - cortex)
                & ~canvas.blob(zs, cx, cy, r_x - thickness + cortex, r_y - thickness + cortex))
        canvas.paint(zs, outer & ~hollow & sector, CORTICAL)
        canvas.paint(zs, core & sector, MARROW)

    # Femoral heads in their acetabular cups, necks running laterally below.
    t_head = rng.uniform(0.05, 0.08)
    radius = rng.uniform(20, 24)
    femur_cortex = rng.uniform(3, 5)
    zs = canvas.slab(0.0, t_head + 0.09)
    scale = ellipsoid_profile(t[zs, None, None], t_head - 0.09, t_head + 0.09)
    for side in (-1, 1):
        cx, cy = side * rng.uniform(0.62, 0.7) * inner_ax[zs], rng.uniform(-5, 10)
        cup = canvas.blob(zs, cx, cy, (radius + 7) * scale, (radius + 7) * scale)
        canvas.paint(zs, cup & (side * (canvas.x[zs] - cx) < 0.3 * radius), CORTICAL)
        canvas.paint(zs, canvas.blob(zs, cx, cy, radius * scale + 1.5, radius * scale + 1.5), SOFT)
        _shelled(canvas, zs, cx, cy, radius * scale, radius * scale, femur_cortex)
        neck = canvas.slab(0.0, t_head)
        cx_neck = cx[neck.start - zs.start:neck.stop - zs.start]
        _shelled(canvas, neck, cx_neck + side * 22, cy - 4, 20, 15, femur_cortex, angle=side * 0.5)


def _draw_ribs(canvas: Canvas, rng, inner_ax, inner_ay, wall):
    """Rib cross-sections around the muscle wall; the z of each rib shifts with angle (ribs are oblique)."""
    t = canvas.t
    zs = canvas.slab(rng.uniform(0.66, 0.74), 1.0)
    ribs_per_t, phase0 = rng.uniform(5, 7), rng.uniform(0, 1)
    col = t[zs, None, None]
    r_x, r_y = inner_ax[zs] - 0.5 * wall, inner_ay[zs] - 0.5 * wall
    for side in (-1, 1):
        for angle in np.deg2rad(np.linspace(30, 150, 7)):  # from the back round to the front
            present = ((col * ribs_per_t + 0.5 * angle / np.pi + phase0) % 1.0) < 0.35
            cx = side * r_x * np.sin(angle)
            cy = r_y * np.cos(angle)
            tangent = -side * angle
            bone = canvas.blob(zs, cx, cy, 8, 5, tangent) & present
            core = canvas.blob(zs, cx, cy, 4.5, 2, tangent) & present
            canvas.paint(zs, bone, CORTICAL)
            canvas.paint(zs, core, MARROW)
