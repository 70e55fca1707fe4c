"""The durable webhook inbox: how deliveries are stored (group commit), claimed and completed."""
