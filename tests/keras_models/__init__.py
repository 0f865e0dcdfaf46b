"""Real Keras exports (model.to_json()) and the tests that train them on fitq."""
