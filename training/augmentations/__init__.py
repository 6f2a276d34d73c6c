"""Augmentations that make the views of self-supervised methods."""
