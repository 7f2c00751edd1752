"""Masks of in-memory pixels: numpy arrays, xarray DataArrays, dask-backed ones.

The same windows, blending and class rule as `cloudkit predict` (`predict.blend`,
`predict.writer.mask_classes`, the Rust cut of `pipeline`), so an array holding a scene's
pixels gets the mask the command writes for that scene:

- ``values.py``    pixels (reflectance or DN) to the store values the windows are cut from;
- ``grid.py``      one block of those values through the model's windows, blended;
- ``chunked.py``   a dask array block by block, each with the margin its windows need;
- ``labelled.py``  a DataArray in, DataArrays out (coordinates, CRS and transform kept);
- ``shadowed.py``  the geometric shadow check (`cloudkit.geometry.shadows`) on a mask in memory;
- ``model.py``     the `Model` that ties them together.

`Model.predict_array` (`cloudkit.load_model`) is the way in.
"""
