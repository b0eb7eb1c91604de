"""Scores of generated images: domain and Inception features, their statistics, and what `dcgan evaluate` and the
training loop's output.eval_every call (scoring.py)."""
