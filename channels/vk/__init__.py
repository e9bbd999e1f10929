"""VK: the community's messages in (Bots Long Poll or the Callback API) as InboundMessages to the
stream, and messages out through vkbottle (channel.py)."""
