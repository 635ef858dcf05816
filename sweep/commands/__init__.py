"""The commands that have no package of their own: `sweep status`, `logs`, `cancel`, `sbatch`,
`dashboard`. Each module adds its own sub-parser (`add_parser`) beside its handler; `sweep.cli`
dispatches."""
