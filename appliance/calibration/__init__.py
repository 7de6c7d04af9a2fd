"""INT8 calibration: activation ranges from images, written as a TensorRT table and a Q/DQ model."""
