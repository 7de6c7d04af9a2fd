"""ONNX Runtime on the CPU: the backend of any Linux host, and the reference for the others."""
import onnxruntime

from appliance.backends.base import InferenceSession


def session_options(threads, optimized_model_path=None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    return options


class OrtSession(InferenceSession):
    def __init__(self, model_path, threads=0):
        self._session = onnxruntime.InferenceSession(
            model_path, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = tuple(output.name for output in self._session.get_outputs())

    def infer(self, tensor):
        values = self._session.run(list(self.output_names), {self.input_name: tensor})
        return dict(zip(self.output_names, values))

    def close(self):
        self._session = None


def open_session(model_path, threads=0):
    return OrtSession(model_path, threads)


def version():
    return onnxruntime.__version__
