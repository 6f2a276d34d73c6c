"""Network parts: the UNet encoder and decoder, and MLP heads."""
