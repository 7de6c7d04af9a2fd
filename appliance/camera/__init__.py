"""Cameras: sources (files, URLs, V4L2, CSI, GStreamer) and the capture thread that reconnects them."""
