"""Offline demo assets: random-weight models, tiny CLIP tokenizers, synthetic photos."""
