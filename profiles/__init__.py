"""The built-in massage programs (one TOML file each), installed as `chair.profiles`."""
