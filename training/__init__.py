"""Keras library for self-supervised pre-training and glomeruli segmentation.

Nothing in this package imports MLflow: tracking attaches from outside through
Keras callbacks (see the ``tracking`` package).
"""
