"""Judging figures: the tolerances, the stored figures (the store) and the one judgement (checks)."""
