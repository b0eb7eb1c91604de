"""`dcgan ablate`: which hacks matter on the user's data, measured over variants, seeds and honest statistics."""
