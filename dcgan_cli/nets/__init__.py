"""The networks: G, D and the combined model, their layers and losses, and one function per hack."""
