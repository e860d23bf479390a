"""Decoding a video file into RGB frames (PyAV, whose wheels carry FFmpeg).

Every way a file can fail to give frames is a :class:`VideoError` whose message is the
reason written to ``failures.csv``: missing, unreadable or corrupt, no video stream
(audio only), no frames, or fewer frames than the header claims.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import MissingDependency

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


def decode_video(path: str, short_side: int | None = None) -> tuple[np.ndarray, float]:
    """``(frames uint8 [n, H, W, 3], frames per second)`` of the first video stream,
    resized while decoding so the shorter side is ``short_side`` (when given)."""
    av = _av()
    if not os.path.isfile(path):
        raise VideoError("missing: no such file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"unreadable: {exc}") from None
    frames = []
    try:
        if not container.streams.video:
            raise VideoError("no video stream (audio only or not a video)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        claimed = int(stream.frames or 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        size = None
        try:
            for frame in container.decode(stream):
                if size is None:
                    size = scaled_size(frame.width, frame.height, short_side)
                frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"corrupt: decoding stopped after {len(frames)} frames ({exc})") from None
    finally:
        container.close()
    if not frames:
        raise VideoError("no frames decoded")
    if claimed and claimed - len(frames) > max(SHORT_FRAMES, SHORT_SHARE * claimed):
        raise VideoError(f"truncated: decoded {len(frames)} of the {claimed} frames its header claims")
    return np.stack(frames), fps
