"""The daemon: the app that starts and stops the parts, its threads and their supervisor, the
pipeline, rebuilds, snapshots, the publish policy and systemd notification."""
