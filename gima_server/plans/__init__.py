"""Plans (GIMA_PLANS_FILE): per-plan route-class quotas and a daily token budget; Stripe subscriptions set them."""
