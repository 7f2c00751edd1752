"""The scene pipeline: paths -> scenes -> grid plans -> tile rows -> one output.

`cloudkit tile` and `cloudkit predict` are the same walk over scenes with different outputs:

- ``run.py``      discovery, the loop over scenes, the skip / fail / keep-going policy, the
                  result, summary and progress types;
- ``writer.py``   :class:`SceneWriter`, the one class an output implements, and what the
                  loop hands it per scene (:class:`SceneJob`);
- ``windows.py``  where a scene's windows lie, grouped by tile row.
- ``cluster.py``  the same scenes spread over a Dask cluster, one scene per task.

The outputs: the tile store (`cloudkit.tiler.writer.StoreWriter`) and the cloud masks
(`cloudkit.predict.writer.PredictionWriter`). A third output is one more ``SceneWriter``.
"""
