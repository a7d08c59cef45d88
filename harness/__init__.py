"""Record Wikipedia's recentchange stream; replay it through one Bytewax bot-detection flow."""

__version__ = "0.1.0"
