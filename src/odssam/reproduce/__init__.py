"""``odssam reproduce``: the paper's tables, one command each.

* :mod:`~odssam.reproduce.tables`: each table's rows, columns, metrics and experiments;
* :mod:`~odssam.reproduce.paper_results`: the published figures (``paper_results.csv``);
* :mod:`~odssam.reproduce.configs`: where the paper configs are read from;
* :mod:`~odssam.reproduce.datasets`: finding each dataset under ``--data-root``;
* :mod:`~odssam.reproduce.runner`: planning, training (skip / resume), wall time;
* :mod:`~odssam.reproduce.comparison`: ours vs paper vs difference as Markdown and CSV;
* :mod:`~odssam.reproduce.report`: a reproduced table's files.
"""
