"""What `sweep status` and the live view show of a study: one trial's row (`trial_row`), what the
scheduler or the process table says of a running trial's job (`job_states`), the live view (`live`)."""
