"""Review movie size and encode time on 100-frame shots: every frame a keyframe against a short GOP (no B-frames).

The two ways a browser gets frame-accurate seeking from H.264 (``report.review_movie``): all-intra, or a keyframe
every ``report.REVIEW_GOP`` frames so a seek decodes at most that many frames. Two shots, shrunk as review movies
are: the demo plate (1280x720, grain and a rolling ball) and VOID's BigBen sample (544x360, real footage, its 50
frames played forward then back). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from voidflow.void_ops import media, report
from voidflow.void_ops.demo import make_demo
from voidflow.void_ops.frames import to_uint8
from voidflow.void_ops.shots import MediaSource

FRAMES = 100
BIGBEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "footage" / "void_BigBen" / "input_video.mp4"


def shots(folder: Path) -> dict[str, np.ndarray]:
    """The two 100-frame shots, full size, uint8 RGB."""
    demo = make_demo(folder / "demo", frames=120)
    plate = media.read_frames(MediaSource(str(demo.plate), "movie", 24.0), 0, FRAMES)
    bigben = media.read_frames(MediaSource(str(BIGBEN), "movie", 12.0), 0, FRAMES // 2)
    return {"demo_1280x720": to_uint8(plate), "bigben_544x360": to_uint8(np.concatenate([bigben, bigben[::-1]]))}


def measure(frames: np.ndarray, folder: Path, gop: int) -> dict[str, float]:
    """Write ``frames`` shrunk as a review movie with a keyframe every ``gop`` frames; its size and encode time."""
    size = report.review_size(frames.shape[2], frames.shape[1])
    small = np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)) for frame in frames])
    path = folder / f"gop{gop}.mp4"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    media.write_movie(small, path, Fraction(24), codec="h264", colour=report.REVIEW_TAGS, keyframe_interval=gop)
    seconds = time.perf_counter() - started
    return {
        "width": size[0],
        "height": size[1],
        "megabytes": round(path.stat().st_size / 1e6, 3),
        "mbit_per_s_at_24fps": round(path.stat().st_size * 8 / (FRAMES / 24) / 1e6, 3),
        "encode_s": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        results = {
            name: {
                "all_intra": measure(frames, folder, 1),
                f"gop_{report.REVIEW_GOP}": measure(frames, folder, report.REVIEW_GOP),
            }
            for name, frames in shots(folder).items()
        }
    document = {"frames": FRAMES, "codec": "libx264 crf 16 yuv420p, no B-frames", "shots": results}
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document))


if __name__ == "__main__":
    main()
