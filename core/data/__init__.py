"""Data: every source decoded once into uint8 image sets (sources, a folder of classes, images and their framing),
the splits, which images keep their label, the batched augmentation, and the cache a long-lived process keeps."""
