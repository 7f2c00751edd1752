"""Files on disk: atomic writes (`atomic`), JSON files (`jsonfile`), the store and output
lock (`locks`) and whether a folder takes files or a write failed on a full disk (`disk`)."""
