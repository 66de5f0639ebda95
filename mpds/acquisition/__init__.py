"""Acquisition: fetching the images of a raw MPDS release and captioning its posters.

`download` fills `posters/` and `actors/` from the URLs of `meta.csv` and `actors.csv`;
`caption` writes the `text` column of `posters.csv` with an image-to-text model.
"""
