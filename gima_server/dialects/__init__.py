"""Wire formats other clients already speak (OpenAI Chat Completions, the AI SDK's UI message stream), each an
encoder over the same reply events: the registry, limits and store never know which one a subscriber reads."""
