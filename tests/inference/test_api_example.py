"""The runnable example of odssam.api's docstring runs and prints what it says."""

from __future__ import annotations

import re

import torch

import odssam.api


def test_the_module_docstring_example_runs(capsys):
    torch.set_num_threads(1)
    example = re.search(r"::\n\n(.*)", odssam.api.__doc__, re.S).group(1)
    source = "\n".join(line[4:] for line in example.splitlines() if line.strip())
    exec(compile(source, "odssam.api example", "exec"), {})
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "['000', 'image_0001']"
    assert out[-2].endswith("(240, 320)")
