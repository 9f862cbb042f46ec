"""mmnerd: build and benchmark multilingual, multimodal named-entity datasets."""

__version__ = "0.1.0"
