"""Training: one engine, and the methods that run on it. Importing this package imports torch.

engine.py is the loop every run shares (seeding, device and precision, schedule, exact resume,
the epoch loop, the non-finite guard, metrics and checkpoints), with loader.py (the seeded
DataLoader), seeding.py (seeds and generator states), display.py (progress and epoch lines),
metrics.py (the per-epoch JSON lines) and distributed.py (torchrun/DDP plumbing). The methods
supply only their data, model, step, state and validation: pretraining.py (what the SSL
methods share) with pretrain_moco.py and pretrain_deepcluster.py, pretrain.py (``cloudkit
pretrain``: the methods by name), and
finetune.py (segmentation, ``cloudkit finetune``); experiment.py runs the label-fraction grid.
Checkpoint files themselves are cloudkit/models/checkpoint.py's.
"""
