"""predmesh xDS control plane: serves Envoy its edge configuration over ADS (SotW, v3)."""
