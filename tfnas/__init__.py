"""tfnas: hardware-aware neural architecture search for Keras 3 / TensorFlow."""

__version__ = "0.1.0"
