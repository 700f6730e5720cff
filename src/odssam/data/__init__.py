"""Datasets of the paper, read from their original on-disk layouts.

Every dataset returns :class:`Sample` (HxWx3 uint8 RGB image, HxW bool mask, name,
original size, source path) and is built through one factory::

    from odssam.data import build_dataset
    train = build_dataset("kvasir", "data/Kvasir-SEG", "train")   # all 900 training images
    sample = train[0]

``odssam data check`` validates a folder; ``odssam data convert`` writes masks
(rasterised MoNuSeg polygons, GlaS instance maps ...) as binary PNGs.
"""

from odssam.data.base import SegmentationDataset, load_entry
from odssam.data.check import CheckReport, SplitStats, check_dataset
from odssam.data.convert import convert_dataset
from odssam.data.image_io import read_image, read_label_mask, read_mask
from odssam.data.index import DatasetIndex, Entry, IndexOptions, Issue
from odssam.data.polygons import rasterize_polygons, read_polygons
from odssam.data.registry import (
    DATASET_REGISTRY,
    DatasetSpec,
    build_dataset,
    dataset_info,
    index_dataset,
    list_datasets,
)
from odssam.data.sample import Sample, collate_samples
from odssam.data.splits import read_split_file, write_split_file

__all__ = [
    "DATASET_REGISTRY",
    "CheckReport",
    "DatasetIndex",
    "DatasetSpec",
    "Entry",
    "IndexOptions",
    "Issue",
    "Sample",
    "SegmentationDataset",
    "SplitStats",
    "build_dataset",
    "check_dataset",
    "collate_samples",
    "convert_dataset",
    "dataset_info",
    "index_dataset",
    "list_datasets",
    "load_entry",
    "rasterize_polygons",
    "read_image",
    "read_label_mask",
    "read_mask",
    "read_polygons",
    "read_split_file",
    "write_split_file",
]
