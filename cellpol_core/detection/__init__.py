"""Finding and pairing the two structures: the network, its training, inference and evaluation.

Network and losses, training targets, model folders, the training loop,
tiled inference, peak decoding and pairing, threshold tuning, the classical
(Otsu) baseline, prediction over files and the paper's evaluation metric.
"""
