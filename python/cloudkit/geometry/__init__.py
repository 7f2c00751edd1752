"""Sun-and-cloud geometry: the sun's angles of a scene (`sun`) and the check of each shadow
against the cloud that casts it (`shadows`)."""
