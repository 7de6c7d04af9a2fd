"""A face detector: the model family's pre/post-processing around one inference session.

The three stages are separate methods so that the pipeline can time each one.
"""
from appliance.models import load_family


class Detector:
    def __init__(self, session, model, settings=None):
        family = load_family(model.family)
        self.session = session
        self.model = model
        self._preprocess = family.Preprocessor(model.input_width, model.input_height, model.mean)
        self._postprocess = family.Postprocessor(model.input_width, model.input_height,
                                                 model.output_names, settings or family.DEFAULT_SETTINGS)

    def preprocess(self, frame):
        """-> (tensor, letterbox)"""
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
        self.detect(np.zeros((self.model.input_height, self.model.input_width, 3), np.uint8))

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
