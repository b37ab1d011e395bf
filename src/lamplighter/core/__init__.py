"""Core: settings, database, identity, audit, events, jobs, errors and the web shell."""
