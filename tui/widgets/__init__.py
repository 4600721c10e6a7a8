"""The dashboard's widgets: each renders part of a DashboardState."""
