"""Notifications (issue 22): channels, deliveries, storm control. The apps call audit.notify.emit."""
