"""``odssam reproduce``: the paper's tables, one command each; ``odssam compare``: run folders side by side.

* :mod:`~odssam.reproduce.tables`: each table's rows, columns, metrics and experiments;
* :mod:`~odssam.reproduce.paper_results`: the published figures (``paper_results.csv``);
* :mod:`~odssam.reproduce.configs`: where the paper configs are read from;
* :mod:`~odssam.reproduce.datasets`: finding each dataset under ``--data-root``;
* :mod:`~odssam.reproduce.runner`: planning, training (skip / resume), wall time;
* :mod:`~odssam.reproduce.comparison`: ours vs paper vs difference as Markdown and CSV
  (the table writer of ``reproduce`` and ``compare``);
* :mod:`~odssam.reproduce.report`: a reproduced table's files.

``odssam compare``: methods across finished run folders.

* :mod:`~odssam.reproduce.run_folders`: what a finished run folder holds (scores, test data, time);
* :mod:`~odssam.reproduce.methods`: a run's method label and its rows in the paper;
* :mod:`~odssam.reproduce.measure`: parameters, FLOPs, prediction speed and the figure;
* :mod:`~odssam.reproduce.compare`: the table and its checks;
* :mod:`~odssam.reproduce.compare_runs`: the command from top to bottom.
"""
