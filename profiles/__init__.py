"""The shipped device profiles (TOML), installed as the package edgeprune.profiles."""
