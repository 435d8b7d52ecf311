"""Stage 1: texts + model -> tidy long DataFrame of per-token attention norms."""
