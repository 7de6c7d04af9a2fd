"""What the TensorRT modules share: the import of tensorrt, its logger, its errors, our dtype map."""
import numpy as np
import tensorrt as trt

NUMPY_DTYPES = (("FLOAT", np.float32), ("HALF", np.float16), ("INT8", np.int8), ("INT32", np.int32),
                ("BOOL", np.bool_), ("UINT8", np.uint8), ("INT64", np.int64))


class TensorRTError(RuntimeError):
    pass


def require(value, what):
    if value is None:
        raise TensorRTError("TensorRT returned nothing from {} (see its log above)".format(what))
    return value


def make_logger():
    return trt.Logger(trt.Logger.WARNING)


def numpy_dtype(trt_dtype):
    """Our own map: trt.nptype of TensorRT 8.2/8.4 breaks on NumPy >= 1.24."""
    for name, dtype in NUMPY_DTYPES:
        if getattr(trt.DataType, name, None) == trt_dtype:
            return dtype
    raise TensorRTError("no NumPy type for TensorRT {}".format(trt_dtype))


def implicit_quantization():
    """TensorRT <= 10: precision by builder flags; 11.x is always strongly typed."""
    return hasattr(trt.BuilderFlag, "INT8")
