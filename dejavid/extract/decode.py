"""Decoding a video file into RGB frames (PyAV, whose wheels carry FFmpeg).

Every way a file can fail to give frames is a :class:`VideoError` whose message is the
reason written to ``failures.csv``: missing, unreadable or corrupt, no video stream
(audio only), no frames, or fewer frames than the header claims.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import MissingDependency
from .sampling import Sampling, clip_indices

# A decode that ends this many frames (and this share) short of the header's count is a
# truncated file, not the usual off-by-a-frame of container headers.
SHORT_FRAMES, SHORT_SHARE = 2, 0.05


class VideoError(Exception):
    """A video that gives no usable frames; ``str(exc)`` is the reason."""


def _av():
    try:
        import av
    except ImportError as exc:
        raise MissingDependency("decoding videos needs PyAV: pip install av "
                                "(or pip install -e '.[extract]')") from exc
    return av


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``short_side`` and the aspect ratio kept
    (each side rounded); unchanged without one."""
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))


def _read(path: str, short_side: int | None, plan=None):
    """One pass over the first video stream: ``(frames {index: uint8 [H, W, 3]}, frames
    decoded, frames the header claims (0: unknown), fps)``.  Only the frames whose index
    is in ``plan(claimed, fps)`` (all when there is no plan or it returns None) are
    converted to RGB and kept."""
    av = _av()
    if not os.path.isfile(path):
        raise VideoError("missing: no such file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"unreadable: {exc}") from None
    frames, n = {}, 0
    try:
        if not container.streams.video:
            raise VideoError("no video stream (audio only or not a video)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        claimed = int(stream.frames or 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        wanted = plan(claimed, fps) if plan else None
        size = None
        try:
            for frame in container.decode(stream):
                if wanted is None or n in wanted:
                    if size is None:
                        size = scaled_size(frame.width, frame.height, short_side)
                    frames[n] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                n += 1
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"corrupt: decoding stopped after {n} frames ({exc})") from None
    finally:
        container.close()
    if not n:
        raise VideoError("no frames decoded")
    if claimed and claimed - n > max(SHORT_FRAMES, SHORT_SHARE * claimed):
        raise VideoError(f"truncated: decoded {n} of the {claimed} frames its header claims")
    return frames, n, claimed, fps


def decode_video(path: str, short_side: int | None = None) -> tuple[np.ndarray, float]:
    """``(frames uint8 [n, H, W, 3], frames per second)`` of the first video stream,
    resized while decoding so the shorter side is ``short_side`` (when given)."""
    frames, n, _, fps = _read(path, short_side)
    return np.stack([frames[k] for k in range(n)]), fps


def decode_clips(path: str, sampling: Sampling, short_side: int | None = None
                 ) -> tuple[np.ndarray, bool]:
    """``(clips uint8 [T, clip_len, H, W, 3], padded)`` of the video at ``path``
    (:func:`dejavid.extract.sampling.clip_indices`).

    Only the frames the clips use are converted and held, planned from the header's
    frame count, so a long video or a sparse sampling costs no memory for the frames
    between; when the decoded count differs from the header's (within the truncation
    tolerance) the plan is redone with the true count, decoding again if it needs a
    frame that was skipped."""
    def plan(claimed: int, fps: float):
        return set(np.unique(clip_indices(claimed, sampling, fps)[0]).tolist()) if claimed else None

    frames, n, _, fps = _read(path, short_side, plan)
    idx, padded = clip_indices(n, sampling, fps)
    need = set(np.unique(idx).tolist())
    if not need <= frames.keys():                  # the header's count was off
        frames = _read(path, short_side, lambda *_: need)[0]
    clips = np.stack([frames[k] for k in idx.reshape(-1)])
    return clips.reshape(idx.shape + clips.shape[1:]), padded
