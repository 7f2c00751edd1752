"""What several test modules (and the benches) share: the paths of the real samples, real tile
stores and checkpoints built once per session, and numpy references of the Rust kernels."""
