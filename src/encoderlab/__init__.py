"""encoderlab: pre-train Transformer encoders, replace the head, freeze, fine-tune — each step a Hydra override."""

__version__ = "0.1.0"
