"""The SMS channel: outbound only, through a gateway provider (SMS Aero; see docs/sms.md)."""
