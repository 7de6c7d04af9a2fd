"""A face detector: the model family's pre/post-processing around one inference session.

The three stages are separate methods so that the pipeline can time each one. The detector works at
one network size (width, height); frames of another aspect are letterboxed into it.
"""
from appliance.models import load_family


class Detector:
    def __init__(self, session, model, settings=None, size=None):
        family = load_family(model.family)
        self.session = session
        self.model = model
        self.size = tuple(size or (model.input_width, model.input_height))
        width, height = self.size
        loader = session.frame_loader(width, height, model.mean) if hasattr(family, "DevicePreprocessor") else None
        if loader is None:
            self._preprocess = family.Preprocessor(width, height, model.mean)
        else:
            self._preprocess = family.DevicePreprocessor(loader, width, height)
        self.preprocessing = session.preprocessing
        self._postprocess = family.Postprocessor(width, height, model.output_names,
                                                 settings or family.DEFAULT_SETTINGS)

    def preprocess(self, frame):
        """-> (tensor, letterbox); the tensor is reused by the next call (or stays on the device)."""
        return self._preprocess(frame)

    def infer(self, tensor):
        return self.session.infer(tensor)

    def postprocess(self, outputs, letterbox):
        return self._postprocess(outputs, letterbox)

    def detect(self, frame):
        tensor, letterbox = self.preprocess(frame)
        return self.postprocess(self.infer(tensor), letterbox)

    def warm_up(self):
        """One inference on a blank frame, so the first real frame does not pay for lazy initialisation."""
        import numpy as np
        width, height = self.size
        self.detect(np.zeros((height, width, 3), np.uint8))

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
