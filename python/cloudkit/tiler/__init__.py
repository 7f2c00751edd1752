"""`cloudkit tile`: scenes into a tile store (`writer`), the twin of `predict.writer`."""
