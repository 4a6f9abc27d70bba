"""The small core every layer builds on: errors, atomic files, paths, versions and host facts, threads, cell ids."""
