"""hilreward.curation: see, doubt and fix a dataset's success labels.

- :mod:`.edits`: the label edits file the label station writes (ranges of frames with a new label).
- :mod:`.relabel`: ``hilreward relabel``, a new dataset with the edits applied.
- :mod:`.suspects`: ``hilreward suspects``, k-fold out-of-fold disagreement spans (labels to doubt).
"""
