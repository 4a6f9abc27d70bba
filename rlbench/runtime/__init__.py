"""One Predictor protocol for every variant: torch, ONNX Runtime, NumPy, ONNX's reference evaluator, zero action."""
