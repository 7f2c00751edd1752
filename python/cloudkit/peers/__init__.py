"""Peer cloud maskers, in one place: their registry and cards (`registry`), the DL-L8S2-UV
networks rebuilt in torch (`dl_l8s2_uv`, `keras_hdf5`), a peer behind the `Predictor`
interface of `cloudkit predict` (`predictor`), scored against a store (`scoring`), and as the
teacher whose classes become a tile store's labels (`teacher`, `teacher_shadows`)."""
