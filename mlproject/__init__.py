"""MLflow Projects entry points: parse parameters, resolve the configuration, call the library."""
