"""All that reads and writes the study database: opening storage (`storage`), the stored records
(`records`), sweep's own tables (`tables`: claims, studies, configurations), who runs what (`claims`,
`owners`), a database that stops answering (`outage`, `riding`), and the one-query-per-table read of a
study's trials (`trial_frames`)."""
