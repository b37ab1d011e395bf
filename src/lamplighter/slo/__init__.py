"""Service level objectives: windows, error budgets, burn rates and their alerts."""
