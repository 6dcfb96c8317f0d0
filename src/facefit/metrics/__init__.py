"""Metrics, each in one place, independent of the face pipeline:

* `landmarks`: NME (landmark-box and outer-eye-corner normalised), CED, AUC, failure rate,
  capped NME;
* `scan`: NoW-style scan-to-mesh error (landmark rigid alignment, ICP, point-to-surface
  distances) and its heat map;
* `geometry`: rotation errors (geodesic, Euler), aligned vertex error, landmark jitter;
* `generative`: FID, IS, KID and path length.

`facefit.eval` runs the benchmark protocols (datasets, yaw buckets, synthetic ground truth)
and reports these.
"""
