"""Datasets: every source (a folder, an array file, the Keras sets, the embedded digits) as uint8 arrays and labels;
sources.py picks one from the config."""
