"""Data helpers shared by dataset plugins: robust image decoding, text reading, loaders."""
