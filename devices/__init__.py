"""Device catalogue, payload schemas, and the registry of elders, contacts and devices."""
