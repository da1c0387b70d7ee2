"""Synthetic training data: phantoms, label masks from annotations, the mask-to-image GAN and pre-training."""
