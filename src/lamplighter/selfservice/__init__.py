"""Self-service: templates (golden paths), the actions they are built from, and their runs."""
