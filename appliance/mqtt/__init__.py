"""MQTT: the topics and payloads of the SPEC (topics.py) and the broker connection (link.py)."""
