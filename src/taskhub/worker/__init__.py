"""``taskhub worker``: consumes the broker's queues and runs the notification scheduler."""
