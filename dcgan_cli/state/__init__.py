"""What a resume needs beyond the networks: every step's random draws and the atomic checkpoints."""
