"""The configuration: the typed, frozen schema, the validators of its values, and the resolved
defaults (paths of the state and cache folders)."""
