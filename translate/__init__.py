"""translate: medical image-to-image translation with adversarial networks."""

__version__ = "0.1.0"
