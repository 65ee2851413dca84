"""How much host memory one shot's stages hold at their worst, from the shot's size alone.

A shot task decodes its plate range into one array and holds a few arrays of that size while a stage runs. The
estimate counts them, stage by stage, in these units:

- ``plate``: the plate range as decoded: frames x height x width x 3 samples of 1 byte (8-bit RGB media), 2 (YUV
  movies and deeper integer files) or 4 (float files such as EXR);
- ``view``: the plate's model view (``plates.PlateView.to_model``): a float32 copy for plates that decode to float
  (an OCIO pass into a new array), nothing for integer plates (their view is the plate itself);
- ``plane``: one 8-bit plane of the range (a quadmask; a float alpha is 4);
- ``window``: float temporaries four deep over ``pipeline.QC_WINDOW + 1`` frames (QC's read-back, reference and
  8-bit roundings, flicker's differences, the pictures' frames, the encoders' frame-by-frame conversions);
- ``model``: VOID's float temporaries over one run of up to 197 frames (fitting the clip, bringing it back);
- ``fixed``: 128 MiB a stage adds whatever the shot's size (codec contexts, OCIO processors, libraries loaded on
  first use).

What each stage holds at its worst, read from ``void_ops.pipeline`` and the functions it calls (decoders fill one
array, OCIO runs in chunks, QC compares a window at a time, encoders convert frame by frame):

- every stage: fixed + window, and
- mask: plate + view + 6 planes (matte, thresholds, ring, quadmask);
- pass1 (and pass2): plate + view + the fill (a new view-sized array; a plate for integer plates) + the fill back in
  the plate's space (float plates: a view) + 2 planes + model (VOID only); pass 2 also holds pass 1's fill, read
  back and seen through the view;
- deliver: plate + the composite + its view + alpha and quadmask (5 planes), and the largest of: the fill until the
  composite (a plate), the pictures' view of the plate, the matte files (9 planes).

``benchmarks/shot_memory.py`` measures the stages on a float EXR shot and checks the estimate covers each one
(``benchmarks/results/shot_memory_cpu.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voidflow.void_ops.media import MediaInfo
from voidflow.void_ops.pipeline import QC_WINDOW, Backend

__all__ = ["WORKER_BYTES", "Sample", "ShotMemory", "decoded_sample", "shot_memory"]

#: What a decoded plate's samples are (``media.read_frames``).
Sample = Literal["uint8", "uint16", "float32"]
_BYTES: dict[Sample, int] = {"uint8": 1, "uint16": 2, "float32": 4}
#: A shot task's worker before any stage: Python, Ray's worker, Prefect's task engine and voidflow imported
#: (measured about 0.3 GiB on Linux; rounded up).
WORKER_BYTES = 512 * 1024**2
#: The longest run VOID takes at once (``VoidSettings.max_frames``); its float temporaries are one run large.
_WINDOW_FRAMES = 197
#: What a stage adds whatever the shot's size: codec contexts, OCIO processors, libraries loaded on first use.
_STAGE_BYTES = 128 * 1024**2
_GB = 1024**3


@dataclass(frozen=True, slots=True)
class ShotMemory:
    """A shot's host memory, stage by stage (see the module docstring for what each stage holds).

    Attributes:
        shot: the shot's name.
        frames, height, width: the plate range as decoded, handles included.
        sample: the decoded sample type.
        stages: (stage, bytes) for mask, pass1 and deliver: what the stage adds to its worker at its worst.
        worker_bytes: the shot task's worker before any stage (``WORKER_BYTES``).
    """

    shot: str
    frames: int
    height: int
    width: int
    sample: Sample
    stages: tuple[tuple[str, int], ...]
    worker_bytes: int = WORKER_BYTES

    @property
    def peak_bytes(self) -> int:
        """The most the shot's task holds: its worker and its largest stage."""
        return self.worker_bytes + max(value for _, value in self.stages)

    @property
    def peak_stage(self) -> str:
        """The stage that holds the most."""
        return max(self.stages, key=lambda item: item[1])[0]

    def line(self) -> str:
        """One line for people: ``2048x1080, 100 frames, float32: ~12.4 GB at deliver``."""
        return (
            f"{self.width}x{self.height}, {self.frames} frames, {self.sample}: "
            f"~{self.peak_bytes / _GB:.1f} GB at {self.peak_stage}"
        )

    def as_dict(self) -> dict[str, object]:
        """The estimate for provenance: the geometry, bytes per stage and the peak."""
        return {
            "frames": self.frames,
            "height": self.height,
            "width": self.width,
            "sample": self.sample,
            "stages": dict(self.stages),
            "worker_bytes": self.worker_bytes,
            "peak_bytes": self.peak_bytes,
        }


def decoded_sample(info: MediaInfo) -> Sample:
    """The sample type ``media.read_frames`` decodes ``info``'s media to: float32 for float files, uint8 for 8-bit
    RGB (PNG, 8-bit TIFF, FFV1 RGB), uint16 for everything else (YUV movies of any depth, 10- to 16-bit files)."""
    if info.is_float:
        return "float32"
    yuv = info.pix_fmt.startswith(("yuv", "nv", "gray"))  # movies' pixel formats; sequences' read "uint8 RGB"
    return "uint8" if info.bit_depth <= 8 and not yuv else "uint16"


def shot_memory(
    shot: str,
    frames: int,
    height: int,
    width: int,
    sample: Sample,
    *,
    backend: Backend = "void",
    pass2: bool = False,
) -> ShotMemory:
    """Estimate the host memory of a shot of ``frames`` x ``height`` x ``width`` decoded as ``sample``.

    Args:
        shot: the shot's name (for messages).
        frames, height, width: the plate range, handles included.
        sample: the decoded sample type (``decoded_sample``).
        backend: the inpainting backend: ``void`` adds its float temporaries over one run.
        pass2: the shot runs VOID's pass 2 (a stage like pass 1 that also holds pass 1's fill).

    Returns:
        The estimate; ``peak_bytes`` is what to ask a scheduler for. Example: a 2048x1080 float EXR shot of 100
        frames (a 2.5 GiB float plate) comes to ~12.4 GiB with the passthrough backend, at deliver; a 4096x2160
        one of 200 frames (a 20.6 GiB plate) to ~145 GiB with VOID, at pass 1.

    Raises:
        ValueError: a size is not positive.
    """
    if min(frames, height, width) < 1:
        raise ValueError(f"shot '{shot}': frames, height and width must be positive, got {frames}x{height}x{width}")
    frame_floats = height * width * 3 * 4
    plane = frames * height * width
    plate = plane * 3 * _BYTES[sample]
    view = frames * frame_floats if sample == "float32" else 0
    window = 4 * min(frames, QC_WINDOW + 1) * frame_floats
    model = 3 * min(frames, _WINDOW_FRAMES) * frame_floats if backend == "void" else 0
    fill = view or plate
    every = _STAGE_BYTES + window
    mask = every + plate + view + 6 * plane
    pass1 = every + plate + view + fill + view + 2 * plane + model
    deliver = every + 2 * plate + view + 5 * plane + max(plate, view, 9 * plane)
    stages = [("mask", mask), ("pass1", pass1)]
    if pass2:
        stages.append(("pass2", pass1 + fill))
    stages.append(("deliver", deliver))
    return ShotMemory(shot, frames, height, width, sample, tuple(stages))
