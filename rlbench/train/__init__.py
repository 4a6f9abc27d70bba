"""Training the zoo's policies: the training loop, its evaluations, early stopping and the export of a run."""
