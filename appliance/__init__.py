"""facewatch: a face-detection appliance for NVIDIA Jetson and any Linux host."""

__version__ = "0.1.0"
