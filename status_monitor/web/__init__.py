"""What faces the network: who may reach what, and the bounds on HTTP clients."""
