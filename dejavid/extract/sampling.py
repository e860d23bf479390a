"""The TSE's time axis: which decoded frames make which clip.

A clip is ``clip_len`` frames ``frame_stride`` apart, so it spans
``span = (clip_len - 1) * frame_stride + 1`` frames.  Clips start either every
``clip_stride`` frames from frame 0 (T grows with the duration:
``T = (n - span) // clip_stride + 1``) or at ``num_clips`` evenly spaced starts from 0 to
``n - span`` (rounded to the nearest frame).  A video shorter than one clip gives one
clip, padded by repeating its last frame.  ``fps`` resampling first maps the video's
frames onto a fixed rate, so the strides count frames at that rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """The sampling settings; :meth:`check` says what is wrong before any work starts."""
    clip_len: int
    frame_stride: int = 1
    clip_stride: Optional[int] = None     # frames between clip starts ...
    num_clips: Optional[int] = None       # ... or this many evenly spaced clips
    fps: Optional[float] = None           # resample to this rate first

    def check(self) -> "Sampling":
        if self.clip_len < 1:
            raise ValueError(f"--clip-len {self.clip_len}: a clip needs at least 1 frame")
        if self.frame_stride < 1:
            raise ValueError(f"--frame-stride {self.frame_stride} must be at least 1")
        if (self.clip_stride is None) == (self.num_clips is None):
            raise ValueError("give exactly one of --clip-stride and --num-clips")
        if self.clip_stride is not None and self.clip_stride < 1:
            raise ValueError(f"--clip-stride {self.clip_stride} must be at least 1")
        if self.num_clips is not None and self.num_clips < 1:
            raise ValueError(f"--num-clips {self.num_clips} must be at least 1")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--fps {self.fps} must be positive")
        return self

    @classmethod
    def of(cls, clip_len: int, frame_stride: int = 1, clip_stride: Optional[int] = None,
           num_clips: Optional[int] = None, fps: Optional[float] = None) -> "Sampling":
        """The command lines' rule, checked: without ``clip_stride`` and ``num_clips`` the
        clips follow each other back to back (``clip_stride = clip_len``)."""
        if clip_stride is None and num_clips is None:
            clip_stride = clip_len
        return cls(clip_len, frame_stride, clip_stride, num_clips, fps).check()

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last, both included."""
        return (self.clip_len - 1) * self.frame_stride + 1


def resample(n_frames: int, src_fps: float, fps: Optional[float]) -> np.ndarray:
    """Indices of the source frames seen at ``fps`` (int64 ``[n']``): the frame shown at
    each time ``k / fps`` inside the video's duration ``n_frames / src_fps``.  Without
    ``fps`` (or an unknown source rate) every frame once."""
    if fps is None or not src_fps or src_fps <= 0:
        return np.arange(n_frames, dtype=np.int64)
    n_out = max(1, math.floor(n_frames * fps / src_fps + 1e-9))
    idx = np.floor(np.arange(n_out) * src_fps / fps + 1e-9).astype(np.int64)
    return np.minimum(idx, n_frames - 1)


def clip_starts(n_frames: int, s: Sampling) -> np.ndarray:
    """First frame of each clip (int64 ``[T]``) in a video of ``n_frames >= 1`` frames."""
    if n_frames < 1:
        raise ValueError("a video with no frames has no clips")
    last = n_frames - s.span
    if last <= 0:
        return np.zeros(1, dtype=np.int64)
    if s.clip_stride is not None:
        return np.arange(0, last + 1, s.clip_stride, dtype=np.int64)
    if s.num_clips == 1:
        return np.array([last // 2], dtype=np.int64)
    return np.rint(np.linspace(0, last, s.num_clips)).astype(np.int64)


def clip_indices(n_frames: int, s: Sampling, src_fps: float = 0.0) -> tuple[np.ndarray, bool]:
    """``(frame indices int64 [T, clip_len] into the decoded video, padded)``: each row one
    clip in time order; ``padded`` is True when the video (after resampling) is shorter
    than one clip and its last frame was repeated."""
    frames = resample(n_frames, src_fps, s.fps)
    starts = clip_starts(len(frames), s)
    pos = starts[:, None] + np.arange(s.clip_len, dtype=np.int64)[None, :] * s.frame_stride
    padded = bool(pos.max() >= len(frames))
    return frames[np.minimum(pos, len(frames) - 1)], padded
