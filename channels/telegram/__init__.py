"""Telegram: the bot, updates in (long polling or the webhook) as InboundMessages to the stream
(updates.py), and sends out to customers and the staff group inside the flood limits (send.py)."""
