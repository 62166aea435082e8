"""Feature assembly service: validated feature vectors from Redis hashes.

See README.md in this folder. `app.FeaturesApp` is the composition root,
`loader` writes feature hashes from data frames, CSV or Parquet files.
"""
