"""Stain separation: stain matrices per stain code, colour deconvolution, perturbation."""
