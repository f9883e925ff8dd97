"""Delivery: the one outbox, the one sender and the one spool that both faces share."""
