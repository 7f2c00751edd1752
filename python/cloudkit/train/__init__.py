"""Training loops (they live here, not in the models): pretraining for now.

``pretrain`` (train/pretrain.py) runs MoCo v2 or DeepCluster v2 on tile stores; checkpoint.py
writes and reads its checkpoints atomically; distributed.py holds the torchrun/DDP plumbing;
metrics.py the per-epoch JSON lines. Importing this package imports torch.
"""
