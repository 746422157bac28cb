"""devices: profiles and fleets, SSH, putting files and the agent on a device, benchmarking a fleet, set-up checks.

Knows paramiko (imported inside ``ssh`` only) and never models beyond their files and sha256.
"""
