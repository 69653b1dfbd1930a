"""eldercare: IoT monitoring and emergency response for older people living at home."""

__version__ = "0.1.0"
