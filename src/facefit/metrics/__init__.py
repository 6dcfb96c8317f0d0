"""Metrics, each in one place, independent of the face pipeline:

* `landmarks`: NME (landmark-box and outer-eye-corner normalised), CED, AUC, failure rate,
  capped NME;
* `geometry`: rotation errors (geodesic, Euler), aligned vertex error, landmark jitter;
* `generative`: FID, IS, KID and path length.

`facefit.eval` runs the benchmark protocols (datasets, yaw buckets, NoW scan alignment,
synthetic ground truth) and reports these.
"""
