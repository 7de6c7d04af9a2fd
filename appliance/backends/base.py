"""What every inference backend offers: named float32 outputs for one input tensor."""


class InferenceSession:
    """A loaded engine. Subclasses implement infer() and release resources in close()."""

    input_name = ""
    output_names = ()

    def infer(self, tensor):
        """tensor: float32 NCHW -> {output name: ndarray}."""
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
