"""MLflow glue: runs, Keras callbacks, figures, dataset inputs and model logging."""
