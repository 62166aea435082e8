"""Generated from protos/predmesh/v1. Do not edit."""
