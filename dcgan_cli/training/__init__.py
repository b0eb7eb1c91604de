"""The training loop, its compiled step and feed, the monitor, and what a run writes about itself."""
