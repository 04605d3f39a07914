"""The Secrets Manager face (AWS JSON 1.1, X-Amz-Target secretsmanager.<Op>) on the registry's port."""
