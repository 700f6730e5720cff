"""One module per on-disk layout; each turns a folder into a :class:`~odssam.data.index.DatasetIndex`."""
