"""The published form of MPDS: the dataset-card template and the code that writes its YAML.

`datasets` >= 4 no longer runs loading scripts, so MPDS is published as shards plus a card whose
YAML declares every config, split, data file and feature. This folder is installed as
`mpds.loading_script`.
"""
