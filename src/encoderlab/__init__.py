"""encoderlab: pre-train Transformer encoders, replace the head, freeze, fine-tune — each step a Hydra override."""

__version__ = "0.1.0"

# Sentence vectors (docs/embeddings.md), imported on first use so that `import encoderlab` stays fast.
__all__ = ["Embedder", "embed"]


def __getattr__(name: str):
    if name in __all__:
        from encoderlab import embedding

        return getattr(embedding, name)
    raise AttributeError(f"module 'encoderlab' has no attribute {name!r}")
