"""optimize: a Keras model (or the built-in digits CNN) to TFLite variants and a run folder with its manifest.

The only subsystem that imports TensorFlow (through ``_tf``), and only inside the functions that need it.
"""
