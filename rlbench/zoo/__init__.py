"""The policy zoo: the registry of algorithms and environments, the deployable policy and its ONNX graph, SB3
agents and their checkpoints, the shipped policies, and the paper's published figures."""
