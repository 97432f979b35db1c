"""compressor: make trained TensorFlow/Keras models small and fast for edge devices, and prove it.

Importing this package is cheap: TensorFlow is only imported by ``compressor.keras_shim``,
and only by the code paths that need it.
"""

__version__ = "0.1.0"
