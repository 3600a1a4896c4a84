"""Identity resolution: merges that every service follows and that can be undone, privacy export and erasure."""
