"""ZeroMQ transport: the PUB socket's owner, the control socket, and the journal behind history."""
