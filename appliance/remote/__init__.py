"""Remote commands: the signed envelope, the replay guard, the dispatcher (daemon side) and the client (ctl)."""
