"""DNS plane: providers that hold the app's records."""
