"""Self-supervised pretraining parts: one small module per part, composed by two methods.

Parts
    momentum      EMA update of a target network, freezing
    memory_bank   NegativeQueue (MoCo's negatives), EmbeddingBank (DeepCluster's embeddings)
    heads         ProjectionHead (MLP), PrototypeHeads (k-means centroids, not trained by gradient)
    losses        info_nce, swapped_cluster_loss: pure functions
    kmeans        spherical_kmeans: faiss or torch backend
    lars          LARS optimiser and the parameter groups it expects
    monitor       collapse and cluster-balance statistics, kNN accuracy
    _dist         the few torch.distributed calls (gather, rank); no-ops in a single process

Methods (compose the parts, hold no training loop; loops live in ``cloudkit.train``)
    moco          MoCo v2 (query/key encoders, queue, shuffled BN)
    deepcluster   DeepCluster v2 (projector, prototype heads, memory bank, k-means per epoch)
"""
