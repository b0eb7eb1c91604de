"""`dcgan tune`: what values the hacks should take, searched with Optuna over trials that are ordinary runs."""
