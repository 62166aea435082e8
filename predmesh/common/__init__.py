"""Pieces shared by every predmesh service."""
