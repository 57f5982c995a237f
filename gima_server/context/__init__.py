"""What of a chat's history reaches the model: the newest whole messages that fit the model's context budget."""
