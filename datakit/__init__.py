"""datakit: turn an LLM's own mistakes into versioned training data, and that data into a better model."""

__version__ = "0.1.0"
