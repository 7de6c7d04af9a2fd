"""An HTTP MJPEG camera (multipart/x-mixed-replace) that a test can kill and bring back on the same port."""
import threading
import time

try:
    from http.server import ThreadingHTTPServer
except ImportError:  # pragma: no cover
    from http.server import HTTPServer as ThreadingHTTPServer
from http.server import BaseHTTPRequestHandler

import cv2

BOUNDARY = "facewatchframe"


def load_jpegs(path, limit=40):
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    capture.release()
    return frames


def resized(jpegs, width, height):
    """The same frames at width x height."""
    import numpy as np
    return [cv2.imencode(".jpg", cv2.resize(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                                            (width, height)))[1].tobytes() for jpeg in jpegs]


class MjpegCamera:
    """kill(): the camera dies (streams end, the port refuses). hang(): it stops sending but keeps every
    connection open and accepts new ones without answering. resume() ends a hang. show(jpegs): it sends
    other frames (another size, as a camera reconfigured)."""

    def __init__(self, jpegs, port=0, fps=10.0):
        self.jpegs = jpegs
        self.fps = fps
        self.port = port
        self._server = None
        self._alive = threading.Event()
        self._sending = threading.Event()
        self._sending.set()
        self._generation = 0

    def start(self):
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                while not camera._sending.is_set():
                    if not camera._alive.is_set():
                        return
                    time.sleep(0.05)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
                self.end_headers()
                index = 0
                generation = camera._generation
                while camera._alive.is_set() and generation == camera._generation:
                    if not camera._sending.is_set():
                        time.sleep(0.05)
                        continue
                    jpeg = camera.jpegs[index % len(camera.jpegs)]
                    try:
                        self.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(
                            BOUNDARY, len(jpeg)).encode("ascii") + jpeg + b"\r\n")
                    except OSError:
                        return
                    index += 1
                    time.sleep(1.0 / camera.fps)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._alive.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return "http://127.0.0.1:{}/stream.mjpg".format(self.port)

    def kill(self):
        """The camera dies: streams end, the port stops answering."""
        self._alive.clear()
        self._server.shutdown()
        self._server.server_close()

    def show(self, jpegs):
        """Send `jpegs` from now on. Streams in progress end there (the client reconnects), as a camera
        reconfigured to another size does: OpenCV's FFmpeg reader keeps a stream's first frame size."""
        self.jpegs = jpegs
        self._generation += 1

    def hang(self):
        self._sending.clear()

    def resume(self):
        self._sending.set()
