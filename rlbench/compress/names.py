"""The files of an artefact directory."""

#: The artefact file every method writes: the ONNX graph, which every variant can run in.
MODEL_ONNX = "model.onnx"
#: The torch module of a method measured in torch (pruning, low rank).
MODEL_PT = "model.pt"
