"""Metric learning for `imgsearch train` and the model scripts. Needs the `[train]` extra (torch).

Serving never imports this package: everything here may import torch. The pure numpy/cv2 parts
(`augment`, `split`, `catalog_data`) do not, so they are usable and testable without it.
"""
