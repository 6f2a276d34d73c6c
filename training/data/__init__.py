"""Reading, pairing, splitting and sampling histology images."""
