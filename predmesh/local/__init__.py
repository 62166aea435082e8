"""Start and stop real processes on loopback: for `predmesh up` and the integration tests."""
