"""Deployment declarations: schedules, work pools and parameters for the batch flow."""
