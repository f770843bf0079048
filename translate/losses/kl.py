"""KL divergence of a diagonal Gaussian posterior from the standard normal prior (VAE, UNIT)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LOSSES, Tensors, Term


def kl_divergence(mu: Tensor, logvar: Tensor, reduction: str = "sum") -> Tensor:
    r"""Closed-form :math:`\mathrm{KL}(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, I))`
    (Kingma & Welling 2014, "Auto-encoding variational Bayes", appendix B).

    .. math::
        \mathcal{L} = -\frac{1}{2B} \sum_{b=1}^{B} \sum_{j}
        \left(1 + \log\sigma_{bj}^2 - \mu_{bj}^2 - \sigma_{bj}^2\right)

    Reduction: *sum* over every latent dimension :math:`j` (channels and, for a spatial latent,
    every voxel) and *mean* over the batch, i.e. the KL per sample in nats. It therefore grows
    with the latent size; scale the term's weight accordingly. ``reduction="mean"`` averages over
    the latent dimensions instead (a KL per latent element, independent of the patch size; UNIT's
    code uses this with unit variance: :math:`\tfrac12 \overline{\mu^2}`).

    Args:
        mu: posterior means.
        logvar: posterior log-variances :math:`\log\sigma^2`.

    Shape:
        - mu, logvar: :math:`(B, Z)`, :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, equal shapes.
        - Output: scalar.

    Example:
        >>> kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8)).item()
        0.0
    """
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise TypeError(f"kl_divergence: expected tensors, got {type(mu).__name__}, {type(logvar).__name__}")
    if mu.shape != logvar.shape or mu.dim() < 2:
        raise ValueError(f"kl_divergence: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} "
                         f"must have the same shape (B, ...) with latent dimensions")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"kl reduction: expected 'sum' or 'mean', got {reduction!r}")
    # the sign folded in, so that a perfect match prints 0.0 rather than -0.0
    per_element = (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1)
    per_sample = per_element.sum(1) if reduction == "sum" else per_element.mean(1)
    return 0.5 * per_sample.mean()


@LOSSES.register("kl")
class KL(Term):
    """KL divergence of the encoder's Gaussian posterior from N(0, I).

    See :func:`kl_divergence`.

    Example:
        >>> KL().compute({"mu": torch.zeros(2, 8), "logvar": torch.zeros(2, 8)}).item()
        0.0
    """

    name = "kl"
    requirement = "a VAE-style encoder producing mu and logvar"
    formula = "-0.5 * mean_batch sum_latent (1 + logvar - mu^2 - exp(logvar))"
    reference = "Kingma & Welling 2014 ICLR (VAE); Liu et al. 2017 NeurIPS (UNIT)"

    def __init__(self, mu: str = "mu", logvar: str = "logvar", reduction: str = "sum"):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction: expected 'sum' or 'mean', got {reduction!r}")
        self.mu, self.logvar, self.reduction = mu, logvar, reduction

    def needs(self) -> tuple:
        return (self.mu, self.logvar)

    def compute(self, tensors: Tensors) -> Tensor:
        return kl_divergence(tensors[self.mu], tensors[self.logvar], self.reduction)

    def extra_repr(self) -> str:
        return f"mu={self.mu!r}, logvar={self.logvar!r}"
