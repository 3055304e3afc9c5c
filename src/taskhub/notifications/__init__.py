"""Notifications: task completed, due within 24 h, overdue; listed in the API and sent by email."""
