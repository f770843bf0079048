"""Evaluation of synthetic data: distances between image sets, and the FID/Dice pipeline."""
