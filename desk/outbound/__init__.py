"""What leaves the desk: the delivery worker over the outbox, customer notifications with their
quiet hours, the fallback to another contact point, the templates of notices."""
