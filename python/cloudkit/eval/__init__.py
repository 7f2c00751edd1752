"""Scoring segmentations: confusion matrices and metrics (``metrics``), a fine-tuned checkpoint
on labelled tile stores (``evaluate``), and reference masks such as Sen2Cor's SCL or
s2cloudless output against the same labels (``reference``)."""
