"""Demo models trained on `predmesh.demo.synth` data."""
