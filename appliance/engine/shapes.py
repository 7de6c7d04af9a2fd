"""The network input's size for a frame size: the long side fixed, the other following the frame's aspect.

A 640x480 camera with a long side of 640 gets a 640x480 network; 1280x720 gets 640x384 (360 rounded up
to the network's stride of 32). The frame is scaled to fit, anchored top-left; the rounding leaves a
few rows or columns of padding, never a square letterbox.
"""
DEFAULT_FRAME_SIZE = (640, 480)


def round_up(value, step):
    return -(-value // step) * step


def network_size(frame_width, frame_height, long_side, stride):
    """(width, height) of the network input for frames of frame_width x frame_height."""
    if frame_width <= 0 or frame_height <= 0:
        raise ValueError("a frame size is positive, got {}x{}".format(frame_width, frame_height))
    if frame_width >= frame_height:
        short = frame_height * long_side / frame_width
        return long_side, max(stride, round_up(int(round(short)), stride))
    short = frame_width * long_side / frame_height
    return max(stride, round_up(int(round(short)), stride)), long_side


def describe(size):
    return "{}x{}".format(*size)
