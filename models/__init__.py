"""Stage 2: tidy frame -> tidy coefficient tables (statsmodels)."""
