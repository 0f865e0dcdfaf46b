"""A trained model in the formats people load elsewhere, from fitq's safetensors file.

- ``keras_archive.to_keras``: a Keras 3 ``.keras`` archive. ``keras.saving.load_model``
  opens it on any backend into a ``Sequential`` whose ``predict`` equals fitq's predict
  within 1e-5: the normalization as a ``Normalization`` layer first, then one Keras layer
  per fitq layer, named ``<type>_<i>`` after ``layers.{i}``.
- ``onnx_graph.to_onnx``: an ONNX model (opset 17, standard operators) with input ``x``
  ``[N, input_dim]`` float32 and output ``y`` ``[N, output_dim]``, the final layer's
  values (softmax probabilities, …), the normalization included; onnxruntime runs it to
  fitq's outputs within 1e-5.

Both are pure functions of the file's bytes, written with numpy (and h5py, onnx): neither
imports torch or Keras. Both raise ``InvalidInput`` (422) for bytes that are not a fitq
model file, and ``Conflict`` (409) for a model the format cannot express — a layer type or
activation it has no equal for, or (Keras) a normalization std that Keras' ``Normalization``
cannot divide by exactly. docs/export.md has the details.
"""
