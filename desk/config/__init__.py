"""Configuration: the settings file and DESK_* variables, their errors, the texts of templates/,
the secrets the service keeps (signing key, API tokens) and signed links."""
