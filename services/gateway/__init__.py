"""Gateway: the public PredictionService (auth, deadline budget, features + inference fan-out, logging)."""
