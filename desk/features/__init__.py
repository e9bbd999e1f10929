"""Features over the core: ratings, order notifications, win-back of lost customers, privacy
(export and forget), answer templates and the web channel's side."""
