"""What the services share at run time: settings, the database schema, tenancy, the consume loop.

The contracts between services live in ``schemas``; this package holds plumbing only.
"""
