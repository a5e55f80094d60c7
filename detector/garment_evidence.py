"""What the photo itself says about a person's garments, beyond the keypoints: where a bottom ends along the
legs (shorts end above the knee, trousers at the ankle) and whether a torso is bare.

Keypoints say where the body is, not what it wears: a bottom spanned from hips to ankles is right for trousers
and twice too long for shorts. Down each leg, from below the hip to mid-shin, the colours split where they
change most; a split strong enough on both legs (see bottom_end) is the hem. A torso whose middle is almost
all skin-coloured wears no top.
"""

from __future__ import annotations

import cv2
import numpy as np

LEGS = ((11, 13, 15), (12, 14, 16))  # (hip, knee, ankle) of the left and the right leg
SAMPLES_PER_SEGMENT = 10
# Lab colour distances (OpenCV's 8-bit Lab) between a leg above and below its split: dark shorts against skin
# differ by 35-150; trousers by up to ~30 (grass seen beside a thin leg, shade); backlit shorts over shaded
# shins by 12-27, which this cannot tell from trousers (tests/data/people).
GARMENT_EDGE = 35.0
LEG_CONTRAST = 20.0
# Both legs splitting level (within one sample) between mid-thigh and just below the knee is a hem seen twice:
# backlit shorts (12-27 per leg) pass, trousers' level splits measured up to 13 on average.
LEVEL_EDGE = 18.0
LEVEL_LEG_CONTRAST = 10.0
KNEE_HEM = (6, 11)  # sample indices down the leg: 0 the hip, SAMPLES_PER_SEGMENT the knee
FIRST = 2  # samples skipped below the hip (belt, the hip's shadow)
# A torso this skin-coloured wears no top. Bare torsos measure 0.95-1.00 on the labelled photos; a skin-toned
# T-shirt in low sun measured 0.95 once, so the bar sits just above it.
BARE_TORSO = 0.96


def _lab_patch_means(image: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    """The Lab colour (OpenCV's 8-bit scale) of the mean RGB of a (2r+1)^2 square around each point (clipped to
    the image), N x 3: only the sampled pixels are read, not a whole photo converted per person."""
    h, w = image.shape[:2]
    means = np.zeros((1, len(points), 3), dtype=np.float32)
    for n, (x, y) in enumerate(points):
        xi, yi = int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1)))
        patch = image[max(0, yi - radius) : yi + radius + 1, max(0, xi - radius) : xi + radius + 1]
        means[0, n] = patch.reshape(-1, 3).mean(axis=0)
    return cv2.cvtColor(np.round(means).astype(np.uint8), cv2.COLOR_RGB2LAB)[0].astype(np.float32)


def _leg_samples(points: np.ndarray, leg: tuple[int, int, int], min_score: float) -> np.ndarray | None:
    """Points down the leg, SAMPLES_PER_SEGMENT per segment: hip -> knee -> ankle, or without a seen ankle
    hip -> knee -> half a thigh further on (a bottom's hem is near the knee either way); None without hip and knee."""
    hip, knee, ankle = (points[i] for i in leg)
    if hip[2] < min_score or knee[2] < min_score:
        return None
    foot = ankle[:2] if ankle[2] >= min_score else knee[:2] + 0.5 * (knee[:2] - hip[:2])
    t = np.linspace(0.0, 1.0, SAMPLES_PER_SEGMENT, endpoint=False)[:, None]
    return np.concatenate([hip[:2] + t * (knee[:2] - hip[:2]), knee[:2] + t * (foot - knee[:2])])


def _change_point(colours: np.ndarray) -> tuple[int, float]:
    """(index, contrast): the split of the leg's colours with the least squared error on both sides, and how far
    apart the two sides' mean colours are."""
    best, best_cost = 2, np.inf
    for k in range(2, len(colours) - 2):
        above, below = colours[:k], colours[k:]
        cost = float(((above - above.mean(0)) ** 2).sum() + ((below - below.mean(0)) ** 2).sum())
        if cost < best_cost:
            best, best_cost = k, cost
    return best, float(np.linalg.norm(colours[:best].mean(0) - colours[best:].mean(0)))


def bottom_end(image: np.ndarray, points: np.ndarray, min_score: float) -> list[tuple[float, float]] | None:
    """Where the person's bottom garment ends on each leg seen (hip and knee): (x, y) points when it ends above
    the middle of the shins (shorts, a short skirt), [] when it runs on (trousers), None when no leg is seen.

    The colours from the upper thigh to mid-shin split where they change most; it is a hem only when every leg
    changes there by LEG_CONTRAST and the legs by GARMENT_EDGE on average (a trouser leg crossing the other leg
    or a patch of grass beside a thin leg changes one leg, not both). Where both legs split level with each
    other between mid-thigh and just below the knee, where hems are, a smaller change will do."""
    splits: list[tuple[int, float, float, float]] = []
    for leg in LEGS:
        path = _leg_samples(points, leg, min_score)
        if path is None:
            continue
        thigh = float(np.hypot(*(points[leg[1], :2] - points[leg[0], :2])))
        # From below the belt and the hip's shadow down to mid-shin.
        path = path[FIRST : SAMPLES_PER_SEGMENT + SAMPLES_PER_SEGMENT // 2]
        k, contrast = _change_point(_lab_patch_means(image, path, max(1, round(0.06 * thigh))))
        x, y = 0.5 * (path[k - 1] + path[k])
        splits.append((k + FIRST, float(x), float(y), contrast))
    if not splits:
        return None
    contrasts = [c for *_, c in splits]
    at = [n for n, *_ in splits]
    level = len(at) == 2 and abs(at[0] - at[1]) <= 1 and min(at) >= KNEE_HEM[0] and max(at) <= KNEE_HEM[1]
    least, mean = (LEVEL_LEG_CONTRAST, LEVEL_EDGE) if level else (LEG_CONTRAST, GARMENT_EDGE)
    if min(contrasts) < least or float(np.mean(contrasts)) < mean:
        return []
    return [(x, y) for _, x, y, _ in splits]


def skin_share(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """The share of skin-coloured pixels in `box` (YCrCb bounds of Chai and Ngan); 0 for an empty box."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    region = image[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    if region.size == 0:
        return 0.0
    ycc = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
    skin = (ycc[:, 0] > 40) & (ycc[:, 1] >= 133) & (ycc[:, 1] <= 173) & (ycc[:, 2] >= 77) & (ycc[:, 2] <= 127)
    return float(skin.mean())


def bare_torso(image: np.ndarray, shoulders: np.ndarray, lower: float) -> bool:
    """Whether the middle of the torso between the shoulders ([2, >=2]: x, y) and `lower` (hip line) is skin."""
    x1, x2 = sorted(float(v) for v in shoulders[:, 0])
    top = float(shoulders[:, 1].mean())
    width, height = x2 - x1, lower - top
    if width < 4 or height < 4:
        return False
    core = (x1 + 0.2 * width, top + 0.15 * height, x2 - 0.2 * width, lower - 0.15 * height)
    return skin_share(image, core) >= BARE_TORSO
